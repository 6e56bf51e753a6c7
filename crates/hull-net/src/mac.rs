//! MAC address text form: `aa:bb:cc:dd:ee:ff` (lower case when formatted, any case parsed).

/// Formats a MAC as six lower-case, colon-separated hex pairs.
pub fn format_mac(mac: &[u8; 6]) -> String {
    let parts: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
    parts.join(":")
}

/// Parses `aa:bb:cc:dd:ee:ff` (case-insensitive); `None` if it is not exactly six hex pairs.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 || !part.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// A link-layer address as the kernel reports it, if it is an Ethernet MAC.
pub(crate) fn mac_from_bytes(bytes: &[u8]) -> Option<[u8; 6]> {
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_lower_case_pairs() {
        assert_eq!(
            format_mac(&[0x02, 0xAB, 0, 0x10, 0xff, 9]),
            "02:ab:00:10:ff:09"
        );
    }

    #[test]
    fn parses_any_case() {
        let want = [0x02, 0xab, 0xcd, 0xef, 0x01, 0x23];
        assert_eq!(parse_mac("02:ab:cd:ef:01:23"), Some(want));
        assert_eq!(parse_mac("02:AB:Cd:EF:01:23"), Some(want));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "02:ab:cd:ef:01",
            "02:ab:cd:ef:01:23:45",
            "02:ab:cd:ef:01:2",
            "02:ab:cd:ef:01:234",
            "02-ab-cd-ef-01-23",
            "g2:ab:cd:ef:01:23",
            "+2:ab:cd:ef:01:23",
            "02:ab:cd:ef:01:23:",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn round_trips() {
        let mac = [0xde, 0xad, 0xbe, 0xef, 0x00, 0x01];
        assert_eq!(parse_mac(&format_mac(&mac)), Some(mac));
    }

    #[test]
    fn only_six_byte_addresses_are_macs() {
        assert_eq!(
            mac_from_bytes(&[1, 2, 3, 4, 5, 6]),
            Some([1, 2, 3, 4, 5, 6])
        );
        assert_eq!(mac_from_bytes(&[0; 4]), None);
        assert_eq!(mac_from_bytes(&[]), None);
    }
}
