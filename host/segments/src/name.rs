//! OS object names of a memory: `<prefix><name>__mgmt<suffix>` for the management segment and
//! `<prefix><name>__<id><suffix>` for data segment `id`.

use crate::{Config, NameError, SegmentId};

const SEPARATOR: &str = "__";
const MGMT: &str = "mgmt";

/// Checks `name` under `config`: non-empty, and every OS name derived from it free of `/`,
/// NUL and `..` and short enough for the backend.
pub fn validate(name: &str, config: &Config) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    // The management name is the longest derived name ("mgmt" has more bytes than "255").
    let longest = mgmt_name(name, config);
    for part in [
        config.get_prefix(),
        name,
        config.get_suffix(),
        longest.as_str(),
    ] {
        if part.contains('/') {
            return Err(NameError::ContainsSlash);
        }
        if part.contains('\0') {
            return Err(NameError::ContainsNul);
        }
        if part.contains("..") {
            return Err(NameError::ContainsDotDot);
        }
    }
    let max = config.get_backend().max_name_len();
    if longest.len() > max {
        return Err(NameError::TooLong {
            len: longest.len(),
            max,
        });
    }
    Ok(())
}

pub(crate) fn mgmt_name(name: &str, config: &Config) -> String {
    format!(
        "{}{name}{SEPARATOR}{MGMT}{}",
        config.get_prefix(),
        config.get_suffix()
    )
}

pub(crate) fn segment_name(name: &str, id: SegmentId, config: &Config) -> String {
    format!(
        "{}{name}{SEPARATOR}{}{}",
        config.get_prefix(),
        id.value(),
        config.get_suffix()
    )
}

fn strip<'a>(os_name: &'a str, config: &Config) -> Option<&'a str> {
    os_name
        .strip_prefix(config.get_prefix())?
        .strip_suffix(config.get_suffix())
}

/// The memory name whose management segment `os_name` is.
pub(crate) fn parse_mgmt<'a>(os_name: &'a str, config: &Config) -> Option<&'a str> {
    let name = strip(os_name, config)?
        .strip_suffix(MGMT)?
        .strip_suffix(SEPARATOR)?;
    (!name.is_empty()).then_some(name)
}

/// The memory name and segment id of data segment `os_name`.
pub(crate) fn parse_segment<'a>(os_name: &'a str, config: &Config) -> Option<(&'a str, SegmentId)> {
    let (name, id) = strip(os_name, config)?.rsplit_once(SEPARATOR)?;
    // Only the canonical decimal spelling: "007" or "+7" are not segment names.
    if name.is_empty() || id.is_empty() || id.len() > 3 || (id.len() > 1 && id.starts_with('0')) {
        return None;
    }
    if !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let id: u8 = id.parse().ok()?;
    Some((name, SegmentId::new(id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config::default().prefix("p_").suffix(".s")
    }

    #[test]
    fn names_roundtrip() {
        let c = cfg();
        assert_eq!(mgmt_name("frames", &c), "p_frames__mgmt.s");
        assert_eq!(
            segment_name("frames", SegmentId::new(17), &c),
            "p_frames__17.s"
        );
        assert_eq!(parse_mgmt("p_frames__mgmt.s", &c), Some("frames"));
        assert_eq!(
            parse_segment("p_frames__17.s", &c),
            Some(("frames", SegmentId::new(17)))
        );
        // A name that itself contains the separator still parses by its last separator.
        assert_eq!(
            parse_segment("p_a__b__255.s", &c),
            Some(("a__b", SegmentId::new(255)))
        );
    }

    #[test]
    fn foreign_and_malformed_names_are_not_parsed() {
        let c = cfg();
        for bad in [
            "q_frames__mgmt.s",
            "p_frames__mgmt",
            "p___mgmt.s",
            "p_frames__256.s",
            "p_frames__007.s",
            "p_frames__+7.s",
            "p_frames__.s",
            "p_frames_1.s",
        ] {
            assert_eq!(parse_segment(bad, &c), None, "{bad}");
        }
        assert_eq!(parse_mgmt("p_frames__17.s", &c), None);
        assert_eq!(parse_mgmt("p___mgmt.s", &c), None);
    }

    #[test]
    fn validation_rejects_bad_names() {
        let c = cfg();
        assert_eq!(validate("", &c), Err(NameError::Empty));
        assert_eq!(validate("a/b", &c), Err(NameError::ContainsSlash));
        assert_eq!(validate("a\0b", &c), Err(NameError::ContainsNul));
        assert_eq!(validate("a..b", &c), Err(NameError::ContainsDotDot));
        assert_eq!(validate("..", &c), Err(NameError::ContainsDotDot));
        // A suffix starting with '.' and a name ending with '.' only meet in the OS name.
        assert_eq!(
            validate("x", &Config::default().prefix("a.").suffix("")),
            Ok(())
        );
        assert_eq!(
            validate(".x", &Config::default().prefix("a.")),
            Err(NameError::ContainsDotDot)
        );
        assert_eq!(
            validate("x", &Config::default().prefix("bad/")),
            Err(NameError::ContainsSlash)
        );
        let overhead = mgmt_name("", &c).len();
        assert_eq!(validate(&"n".repeat(255 - overhead), &c), Ok(()));
        assert_eq!(
            validate(&"n".repeat(256 - overhead), &c),
            Err(NameError::TooLong { len: 256, max: 255 })
        );
        assert!(validate(&"n".repeat(10 * 1024), &c).is_err());
        assert_eq!(validate("ünïcödé frames", &c), Ok(()));
    }
}
