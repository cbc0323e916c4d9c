//! Payment codes as pictures for the wallet: Code 128 and QR, both as SVG.

use barcoders::generators::svg::SVG;
use barcoders::sym::code128::Code128;
use qrcode::QrCode;
use qrcode::render::svg;

/// A Code 128 barcode of the digits, as an SVG document.
pub fn code128_svg(digits: &str) -> Option<String> {
    // Character set C ("Ć" prefix) packs two digits per symbol: the shortest bars for 20 digits.
    let barcode = Code128::new(format!("\u{0106}{digits}")).ok()?;
    SVG::new(120).xdim(2).generate(barcode.encode()).ok()
}

/// A QR code of the digits, as an SVG document.
pub fn qr_svg(digits: &str) -> Option<String> {
    let code = QrCode::with_error_correction_level(digits.as_bytes(), qrcode::EcLevel::M).ok()?;
    Some(
        code.render::<svg::Color<'_>>()
            .min_dimensions(200, 200)
            .quiet_zone(true)
            .build(),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_both() {
        let d = "88112345684305168265";
        let bar = super::code128_svg(d).expect("code128");
        assert!(bar.starts_with("<svg") && bar.contains("rect"));
        let qr = super::qr_svg(d).expect("qr");
        assert!(qr.contains("<svg") && qr.contains("path") || qr.contains("rect"));
    }
}
