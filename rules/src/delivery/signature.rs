//! The webhook signature: `X-CDC-Health-Signature: sha256=<hex>`, an HMAC-SHA256 of the
//! exact body bytes keyed with the sink's `secret`, so a receiver can tell our requests from
//! forged ones. The same scheme GitHub and Stripe use, which most receivers already know.

use ring::hmac;

const PREFIX: &str = "sha256=";

/// "sha256=<lowercase hex of HMAC-SHA256(secret, body)>", what X-CDC-Health-Signature carries.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let tag = hmac::sign(&key, body);
    let mut out = String::with_capacity(PREFIX.len() + 64);
    out.push_str(PREFIX);
    for byte in tag.as_ref() {
        out.push(hex_digit(byte >> 4));
        out.push(hex_digit(byte & 0x0f));
    }
    out
}

/// Constant-time check of a received header value against the body (for documentation/tests;
/// ring::hmac::verify). Surrounding whitespace is ignored and the hex may be in either case;
/// anything else that is not exactly `sha256=` and 64 hex digits fails.
pub fn verify(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex) = header.trim().strip_prefix(PREFIX) else {
        return false;
    };
    let Some(tag) = decode_hex(hex) else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    // ring compares in constant time, so the check leaks nothing about how close a guess was.
    hmac::verify(&key, body, &tag).is_ok()
}

fn hex_digit(nibble: u8) -> char {
    char::from(b"0123456789abcdef"[usize::from(nibble)])
}

/// Exactly 32 bytes of hex; the length is public (it is the same for every tag).
fn decode_hex(text: &str) -> Option<[u8; 32]> {
    let digits = text.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let value = |d: u8| char::from(d).to_digit(16).map(|v| v as u8);
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = value(pair[0])? << 4 | value(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC4231_2: &str =
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";

    #[test]
    fn matches_rfc_4231_test_case_2() {
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            RFC4231_2
        );
    }

    #[test]
    fn matches_rfc_4231_test_case_1_with_a_binary_key() {
        // Key 0x0b * 20, data "Hi There".
        assert_eq!(
            signature(&[0x0b; 20], b"Hi There"),
            "sha256=b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
    }

    #[test]
    fn empty_secret_and_body_still_sign() {
        let s = signature(b"", b"");
        assert_eq!(s.len(), PREFIX.len() + 64);
        assert!(s[PREFIX.len()..]
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
        assert!(verify(b"", b"", &s));
    }

    #[test]
    fn verify_accepts_the_signature_and_nothing_else() {
        let body = b"what do ya want for nothing?";
        assert!(verify(b"Jefe", body, RFC4231_2));
        assert!(verify(
            b"Jefe",
            body,
            &RFC4231_2.to_uppercase().replace("SHA256=", "sha256=")
        ));
        assert!(verify(b"Jefe", body, &format!("  {RFC4231_2}\t")));
        assert!(!verify(b"jefe", body, RFC4231_2), "other key");
        assert!(
            !verify(b"Jefe", b"what do ya want for nothing!", RFC4231_2),
            "other body"
        );
        assert!(
            !verify(b"Jefe", body, &RFC4231_2[PREFIX.len()..]),
            "no prefix"
        );
        assert!(!verify(b"Jefe", body, &RFC4231_2.replace("sha256", "sha1")));
        assert!(
            !verify(b"Jefe", body, &RFC4231_2[..RFC4231_2.len() - 2]),
            "short"
        );
        assert!(!verify(b"Jefe", body, &format!("{RFC4231_2}00")), "long");
        assert!(
            !verify(b"Jefe", body, &RFC4231_2.replace('5', "g")),
            "not hex"
        );
        assert!(!verify(b"Jefe", body, ""));
        // One flipped nibble.
        let mut flipped = RFC4231_2.to_string();
        flipped.replace_range(10..11, "0");
        assert_ne!(flipped, RFC4231_2);
        assert!(!verify(b"Jefe", body, &flipped));
    }

    #[test]
    fn non_ascii_header_does_not_panic() {
        let header = format!("sha256={}", "é".repeat(32));
        assert_eq!(header.len(), PREFIX.len() + 64);
        assert!(!verify(b"k", b"b", &header));
    }
}
