//! The `correlationTag` of an SMS object: a weak, computable reference that lets a client
//! match a message it got over the radio network with the copy in the store, when there is
//! no unique id (NMS §5.1.12; CPM Message Storage §6.5 and §7.4).
//!
//! CPM §6.5.1.1 and §7.4.1.1 make the tag the RCC.07 §3.2.4.7.3 "Message-Correlator". US
//! carriers (AT&T, T-Mobile) deployed a different, hash-based tag that their clients compute
//! locally and compare with `correlationTag`. Both are offered; the deployment picks one.
//!
//! Both are pure functions of the SMS text and its addresses.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use md5::{Digest as _, Md5};

/// Which correlation tag algorithm a deployment uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TagAlgorithm {
    /// RCC.07 §3.2.4.7.3 Message-Correlator (what CPM §6.5.1.1 / §7.4.1.1 mandate).
    #[default]
    Rcc07,
    /// The MD5-based tag AT&T and T-Mobile clients compute (see [`us_carrier_hash`]).
    UsCarrierHash,
}

/// What the algorithms need to know about an SMS.
///
/// `incoming` was added to the original four fields because the US-carrier hash needs the
/// direction: it hashes the sender of a received SMS and the recipient of a sent one, with
/// different separators. It defaults to `false` (sent), the branch the reference client
/// takes for every type other than "received". Build with `..Default::default()` to stay
/// source-compatible if more fields are ever needed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SmsFacts<'a> {
    /// The SMS text (the whole reassembled message, as stored).
    pub text: &'a str,
    /// Originator address (`From`), as a bare number or a `tel:`/`sip:` URI.
    pub from: Option<&'a str>,
    /// Recipient address (`To`), as a bare number or a `tel:`/`sip:` URI.
    pub to: Option<&'a str>,
    /// `true` for an SMS received by the box's owner (`Direction` `In`), `false` for one sent.
    pub incoming: bool,
}

/// The correlation tag of an SMS under `alg`.
pub fn correlation_tag(alg: TagAlgorithm, sms: &SmsFacts<'_>) -> String {
    match alg {
        TagAlgorithm::Rcc07 => message_correlator(sms.text),
        TagAlgorithm::UsCarrierHash => {
            let number = if sms.incoming { sms.from } else { sms.to };
            us_carrier_hash(number, sms.incoming, sms.text)
        }
    }
}

/// The longest prefix of the text the Message-Correlator keeps, in UTF-16 code units.
const CORRELATOR_LIMIT: usize = 160;

/// RCC.07 §3.2.4.7.3 Message-Correlator of an SMS text.
///
/// The RCC.07 text itself was not available; the rules are those of the digest
/// (`digest-oma-nms.md` §8.2), taken from the Orange RCS client (`HeaderCorrelatorUtils`):
///
/// 1. keep the first 160 characters of the text;
/// 2. replace every CR and every LF by one space;
/// 3. if every character is US-ASCII, that is the value; otherwise the value is the RFC 2047
///    encoded word `=?utf-8?b?` + base64 (standard alphabet, padded) of the UTF-8 bytes + `?=`.
///
/// Choices where the description is loose:
/// * "Characters" are counted in UTF-16 code units, as the Java reference does
///   (`String.length()`), and as SMS itself counts UCS-2 text. Where the cut falls inside a
///   surrogate pair, Java keeps a lone high surrogate, which its UTF-8 encoder writes as `?`;
///   this does the same, so a client and the server agree on emoji-heavy texts too.
/// * "US-ASCII" means U+0000..=U+007F. The Orange code tests `c > 128` and so lets U+0080
///   through unencoded; that is an off-by-one against its own comment and against the
///   digest's rule, and U+0080 (a C1 control) does not occur in real SMS text.
/// * The empty text (or an SMS without text) gives the empty string.
pub fn message_correlator(text: &str) -> String {
    let mut kept = String::with_capacity(text.len().min(4 * CORRELATOR_LIMIT));
    let mut units = 0;
    let mut split_pair = false;
    for c in text.chars() {
        let w = c.len_utf16();
        if units + w > CORRELATOR_LIMIT {
            // Only a 2-unit character can straddle the limit: Java keeps its high half.
            split_pair = units < CORRELATOR_LIMIT;
            break;
        }
        units += w;
        kept.push(if c == '\r' || c == '\n' { ' ' } else { c });
    }
    if split_pair {
        kept.push('?');
    }
    if kept.is_ascii() && !split_pair { kept } else { format!("=?utf-8?b?{}?=", STANDARD.encode(kept.as_bytes())) }
}

/// The US-carrier SMS hash (digest §8.3, from the Samsung client's
/// `AmbsUtils.generateSmsHashCode`, used for AT&T and T-Mobile):
///
/// 1. `number` in E.164 form ([`us_e164`]);
/// 2. `":::" + number + "::" + body` for a received SMS, `number + ":::::" + body` otherwise;
/// 3. MD5 of the UTF-8 bytes;
/// 4. the first 8 bytes as an unsigned big-endian integer, in lower-case hexadecimal with no
///    leading zeros (Java `new BigInteger(1, first8).toString(16)`).
///
/// The body is hashed whole: unlike the Message-Correlator, no truncation and no CR/LF
/// replacement. A missing number hashes as the text `null`, because the Java code appends a
/// `null` reference to its `StringBuffer`; mimicking that keeps such tags equal to the
/// client's.
pub fn us_carrier_hash(number: Option<&str>, incoming: bool, body: &str) -> String {
    let number = number.map(us_e164).filter(|n| !n.is_empty()).unwrap_or_else(|| "null".to_owned());
    let input = if incoming { format!(":::{number}::{body}") } else { format!("{number}:::::{body}") };
    let digest = Md5::digest(input.as_bytes());
    let first8 = digest.iter().take(8).fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    format!("{first8:x}")
}

/// The number as the US-carrier hash writes it.
///
/// The Samsung client normalises a bare number only: a leading `+` keeps it as is; otherwise
/// 10 characters get `+1`, more than 10 get `+`, fewer (short codes) are left alone.
///
/// The store, unlike the phone, often holds the address as a URI, so before that step this
/// reduces a URI to its number (our addition, so that `tel:+14085550100` hashes like the
/// `+14085550100` the phone has): an enclosing `<...>` (name-addr) is unwrapped; a `tel:`
/// URI gives its number without parameters, a `sip:`/`sips:` URI its user part without
/// parameters; RFC 3966 visual separators (`-`, `.`, `(`, `)`) are removed from a number so
/// extracted. A bare value is used exactly as given, as the phone does.
pub fn us_e164(address: &str) -> String {
    let number = uri_number(address);
    if number.starts_with('+') {
        return number;
    }
    match number.encode_utf16().count() {
        10 => format!("+1{number}"),
        n if n > 10 => format!("+{number}"),
        _ => number,
    }
}

/// The number inside a `tel:`/`sip:`/`sips:` URI, or the bare value unchanged.
fn uri_number(address: &str) -> String {
    let trimmed = address.trim();
    let inner = match (trimmed.find('<'), trimmed.rfind('>')) {
        (Some(open), Some(close)) if open < close => &trimmed[open + 1..close],
        _ => trimmed,
    };
    let lower = inner.to_ascii_lowercase();
    let rest = if lower.starts_with("tel:") {
        &inner[4..]
    } else if lower.starts_with("sip:") {
        user_part(&inner[4..])
    } else if lower.starts_with("sips:") {
        user_part(&inner[5..])
    } else {
        return address.to_owned();
    };
    let number = rest.split(';').next().unwrap_or_default();
    number.chars().filter(|c| !matches!(c, '-' | '.' | '(' | ')')).collect()
}

/// The user part of a SIP URI's remainder (`user[;params]@host...`), or all of it.
fn user_part(rest: &str) -> &str {
    rest.split_once('@').map_or(rest, |(user, _)| user)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rcc07(text: &str) -> String {
        correlation_tag(TagAlgorithm::Rcc07, &SmsFacts { text, ..Default::default() })
    }

    // ---- RCC.07 Message-Correlator
    //
    // Vectors: "Bonjour!" and the Russian text with its encoded word are copied from the
    // Orange client's own unit test (HeaderCorrelatorUtilsTest). The others were computed
    // with Python's base64 module from the rules in the doc comment.

    #[test]
    fn ascii_text_is_its_own_correlator() {
        assert_eq!(rcc07("Bonjour!"), "Bonjour!");
    }

    #[test]
    fn non_ascii_text_is_an_encoded_word() {
        assert_eq!(rcc07("На здоровье, мой друг"), "=?utf-8?b?0J3QsCDQt9C00L7RgNC+0LLRjNC1LCDQvNC+0Lkg0LTRgNGD0LM=?=");
        assert_eq!(rcc07("Bienvenu à l'été indien"), "=?utf-8?b?QmllbnZlbnUgw6AgbCfDqXTDqSBpbmRpZW4=?=");
    }

    #[test]
    fn cr_and_lf_become_spaces() {
        assert_eq!(rcc07("a\r\nb\nc\rd"), "a  b c d");
    }

    #[test]
    fn text_is_cut_at_160() {
        let long = "x".repeat(200);
        assert_eq!(rcc07(&long), "x".repeat(160));
        // A non-ASCII character past the cut does not force the encoded form.
        let tail = format!("{}é", "a".repeat(160));
        assert_eq!(rcc07(&tail), "a".repeat(160));
        // Exactly 160 is kept whole.
        assert_eq!(rcc07(&"y".repeat(160)), "y".repeat(160));
    }

    #[test]
    fn cut_inside_a_surrogate_pair_keeps_a_question_mark_like_java() {
        // 159 units + an emoji (2 units): Java keeps a lone high surrogate, encoded as '?'.
        let text = format!("{}😀", "a".repeat(159));
        let expected = format!("=?utf-8?b?{}?=", STANDARD.encode(format!("{}?", "a".repeat(159))));
        assert_eq!(rcc07(&text), expected);
        // An emoji that fits whole is encoded normally (158 + 2 = 160 units).
        let fits = format!("{}😀", "a".repeat(158));
        assert_eq!(rcc07(&fits), format!("=?utf-8?b?{}?=", STANDARD.encode(fits.as_bytes())));
    }

    #[test]
    fn empty_text_gives_empty_correlator() {
        assert_eq!(rcc07(""), "");
    }

    #[test]
    fn rcc07_ignores_addresses_date_and_direction() {
        let a = SmsFacts { text: "Hi", from: Some("+1"), to: Some("+2"), incoming: true };
        assert_eq!(correlation_tag(TagAlgorithm::Rcc07, &a), "Hi");
    }

    // ---- US-carrier hash
    //
    // Vectors computed independently with Python's hashlib:
    //   format(int.from_bytes(hashlib.md5(s.encode()).digest()[:8], "big"), "x")
    // for the input string `s` noted beside each.

    fn us(from: Option<&str>, to: Option<&str>, incoming: bool, text: &str) -> String {
        correlation_tag(TagAlgorithm::UsCarrierHash, &SmsFacts { text, from, to, incoming })
    }

    #[test]
    fn received_sms_hashes_sender() {
        // s = ":::+14085550100::Hello"
        assert_eq!(us(Some("+14085550100"), Some("+15195551212"), true, "Hello"), "b76a2f8841e884c4");
    }

    #[test]
    fn sent_sms_hashes_recipient() {
        // s = "+447700900123:::::See you at 6?\nOK" (the body is not altered)
        assert_eq!(us(Some("+15195551212"), Some("+447700900123"), false, "See you at 6?\nOK"), "c1606d4266b673ab");
    }

    #[test]
    fn no_leading_zeros() {
        // s = ":::+14085550100::Hello 8", MD5 0b5ff0cb05272857ff12984353bbbd38
        assert_eq!(us(Some("+14085550100"), None, true, "Hello 8"), "b5ff0cb05272857");
    }

    #[test]
    fn utf8_body() {
        // s = ":::+14085550100::Grüße 😀"
        assert_eq!(us(Some("+14085550100"), None, true, "Grüße 😀"), "7b872a3595695e71");
    }

    #[test]
    fn numbers_are_made_e164_like_the_client() {
        let want = "b76a2f8841e884c4"; // ":::+14085550100::Hello"
        assert_eq!(us(Some("4085550100"), None, true, "Hello"), want, "10 digits get +1");
        assert_eq!(us(Some("14085550100"), None, true, "Hello"), want, "more than 10 get +");
        assert_eq!(us(Some("tel:+14085550100"), None, true, "Hello"), want);
        assert_eq!(us(Some("tel:+1-408-555-0100;verstat=TN-Validation-Passed"), None, true, "Hello"), want);
        assert_eq!(us(Some("<sip:+14085550100@ims.example;user=phone>"), None, true, "Hello"), want);
        assert_eq!(us(Some("Bob <tel:4085550100>"), None, true, "Hello"), want);
        // Short codes stay as they are: s = ":::12345::Your code is 1234"
        assert_eq!(us(Some("12345"), None, true, "Your code is 1234"), "366ebf3b57da4112");
    }

    #[test]
    fn missing_number_hashes_as_null_like_java() {
        // s = ":::null::x"
        assert_eq!(us(None, None, true, "x"), "e3192e3aed1421b4");
        assert_eq!(us(Some(""), None, true, "x"), "e3192e3aed1421b4");
        assert_eq!(us(Some("tel:"), None, true, "x"), "e3192e3aed1421b4");
    }

    #[test]
    fn us_e164_rules() {
        assert_eq!(us_e164("+447700900123"), "+447700900123");
        assert_eq!(us_e164("4085550100"), "+14085550100");
        assert_eq!(us_e164("447700900123"), "+447700900123");
        assert_eq!(us_e164("611"), "611");
        assert_eq!(us_e164("sips:611@carrier.example"), "611");
        assert_eq!(us_e164("TEL:+14085550100"), "+14085550100");
    }

    #[test]
    fn never_panics_on_odd_addresses() {
        for a in ["<", ">", "><", "<>", "tel:;", "sip:@", "sip:", "sips:", "\u{0}", "é<ü>", "<tél:1>"] {
            let _ = us_e164(a);
            let _ = us(Some(a), Some(a), true, a);
            let _ = us(Some(a), Some(a), false, a);
        }
    }

    #[test]
    fn algorithm_names_on_the_wire() {
        assert_eq!(serde_json::to_string(&TagAlgorithm::Rcc07).ok().as_deref(), Some("\"rcc07\""));
        assert_eq!(serde_json::to_string(&TagAlgorithm::UsCarrierHash).ok().as_deref(), Some("\"us-carrier-hash\""));
        assert_eq!(serde_json::from_str::<TagAlgorithm>("\"us-carrier-hash\"").ok(), Some(TagAlgorithm::UsCarrierHash));
        assert_eq!(TagAlgorithm::default(), TagAlgorithm::Rcc07);
    }
}
