//! The shape of `config/mecha.yaml` as serde reads it: typed sections whose every field is
//! optional (`#[serde(default)]`), unknown fields refused with a did-you-mean, and sizes and
//! durations read into [`Checked`] values, so that a bad value is reported together with every
//! other problem instead of stopping the parse.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, IntoDeserializer, Visitor};

use super::RawTls;
use crate::config::ConfigError;

/// The whole file.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct FileSettings {
    pub apps: Vec<FileApp>,
    pub limits: FileLimits,
    pub actors: FileActors,
    pub server: FileServer,
    pub stores: BTreeMap<String, BTreeMap<String, String>>,
    pub policy: FilePolicy,
    pub quotas: FileQuota,
    pub metrics: FileToken,
}

/// `policy:`: what applies to every store where its own `stores:` entry says nothing.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct FilePolicy {
    pub default: Option<String>,
}

/// `quotas:` and `apps[].quota`: every field unset inherits (the defaults, or `quotas`).
#[derive(Deserialize, Default, Clone)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct FileQuota {
    pub max_concurrent: Option<usize>,
    pub requests_per_second: Option<u32>,
    pub burst: Option<u32>,
    pub refusal_delay: Checked<Dur>,
    pub max_body_bytes: Checked<Size>,
}

/// Where a token comes from: exactly one of the three is expected.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct FileToken {
    pub token: Option<String>,
    pub token_env: Option<String>,
    pub token_file: Option<PathBuf>,
}

/// One `apps:` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct FileApp {
    pub id: String,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub token_env: Option<String>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    #[serde(default)]
    pub quota: FileQuota,
    #[serde(default)]
    pub requires: Vec<String>,
    #[serde(default)]
    pub portable_to: Vec<String>,
    #[serde(default)]
    pub portability: Option<String>,
    #[serde(default)]
    pub stores: BTreeMap<String, BTreeMap<String, String>>,
}

/// `limits:`.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct FileLimits {
    pub max_body_size: Checked<Size>,
    pub max_key_length: Option<usize>,
    pub max_bulk_items: Option<usize>,
    pub max_transaction_ops: Option<usize>,
    pub max_query_scan: Option<usize>,
    pub default_bulk_parallelism: Option<usize>,
    pub max_connections: Option<usize>,
    pub header_timeout: Checked<Dur>,
    pub body_timeout: Checked<Dur>,
    pub idle_timeout: Checked<Dur>,
    pub max_concurrent_streams: Option<usize>,
    pub max_json_depth: Option<usize>,
    pub blocking_parse_threshold: Checked<Size>,
    pub max_metadata_entries: Option<usize>,
    pub max_metadata_key_length: Option<usize>,
    pub max_metadata_bytes: Checked<Size>,
    pub max_body_bytes_in_flight: Checked<Size>,
    pub body_memory_wait: Checked<Dur>,
    pub max_connections_per_peer: Option<usize>,
}

/// `actors:`.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct FileActors {
    pub mailbox_capacity: Option<usize>,
    pub request_timeout: Checked<Dur>,
    pub health_interval: Checked<Dur>,
    pub restart_after_failed_pings: Option<u32>,
    pub ttl_sweep_interval: Checked<Dur>,
}

/// `server:`.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct FileServer {
    pub shutdown_timeout: Checked<Dur>,
    pub workers: Option<usize>,
    pub token_file_check_interval: Checked<Dur>,
    pub reload_interval: Checked<Dur>,
    pub tls: Option<RawTls>,
}

/// A scalar setting as read: absent (or `null`), its value, or why its text is not one.
/// Keeping the problem instead of failing the parse lets every bad value of a file be
/// reported at once, each under its own field.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Checked<T> {
    /// Not given: the default (or the inherited value) applies.
    #[default]
    Unset,
    /// A valid value.
    Set(T),
    /// The text given, and what is wrong with it.
    Bad(String),
}

impl<T> Checked<T> {
    /// The value, `default` when unset; a bad value is reported under `field` and gives
    /// `default`.
    pub fn or_report(self, field: &str, default: T, err: &mut dyn FnMut(&str, String)) -> T {
        match self {
            Checked::Unset => default,
            Checked::Set(v) => v,
            Checked::Bad(e) => {
                err(field, e);
                default
            }
        }
    }

    /// `Some(value)`, `None` when unset or bad (a bad value is reported under `field`).
    pub fn report(self, field: &str, err: &mut dyn FnMut(&str, String)) -> Option<T> {
        match self {
            Checked::Unset => None,
            Checked::Set(v) => Some(v),
            Checked::Bad(e) => {
                err(field, e);
                None
            }
        }
    }
}

impl<'de, T: FromStr<Err = String>> Deserialize<'de> for Checked<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Option::<ScalarText>::deserialize(d)? {
            None => Checked::Unset,
            Some(ScalarText(text)) => match text.parse() {
                Ok(v) => Checked::Set(v),
                Err(e) => Checked::Bad(e),
            },
        })
    }
}

/// Any scalar (string, number, boolean) as its text; a sequence or mapping is a type error.
struct ScalarText(String);

impl<'de> Deserialize<'de> for ScalarText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text(PhantomData<()>);
        impl Visitor<'_> for Text {
            type Value = ScalarText;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a size or duration")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_owned()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
        }
        d.deserialize_any(Text(PhantomData))
    }
}

/// A duration: humantime's spellings (`250ms`, `5s`, `1m30s`, `2h`) or a bare number of
/// seconds (`10`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl FromStr for Dur {
    type Err = String;
    fn from_str(value: &str) -> Result<Dur, String> {
        let v = value.trim();
        if let Ok(secs) = v.parse::<u64>() {
            return Ok(Dur(Duration::from_secs(secs)));
        }
        let text: de::value::StrDeserializer<'_, de::value::Error> = v.into_deserializer();
        match humantime_serde::deserialize(text) {
            Ok(d) => Ok(Dur(d)),
            // humantime says what is wrong (a missing unit, an unknown one).
            Err(_) => Err(crate::actors::backends::parse_duration(value)
                .err()
                .unwrap_or_else(|| format!("'{value}' is not a duration"))),
        }
    }
}

/// A size in bytes: a byte count or a whole number with a unit. Units are binary whatever
/// their spelling: `K`, `Ki`, `KB` and `KiB` all mean 1024 bytes (likewise `M…` and `G…`),
/// as Mecha has always read them. Fractions are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub usize);

impl FromStr for Size {
    type Err = String;
    fn from_str(raw: &str) -> Result<Size, String> {
        let s = raw.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num.parse().map_err(|_| format!("'{raw}' is not a size"))?;
        let unit = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => bytesize::ByteSize::b(1),
            "k" | "ki" | "kb" | "kib" => bytesize::ByteSize::kib(1),
            "m" | "mi" | "mb" | "mib" => bytesize::ByteSize::mib(1),
            "g" | "gi" | "gb" | "gib" => bytesize::ByteSize::gib(1),
            _ => return Err(format!("'{raw}' has an unknown unit")),
        };
        n.checked_mul(unit.as_u64())
            .and_then(|b| usize::try_from(b).ok())
            .map(Size)
            .ok_or_else(|| format!("'{raw}' is too large"))
    }
}

/// Reads the file's structure. A structural problem (an unknown field, a section of the
/// wrong type, an app without `id`) stops the read; it is reported under its path (such as
/// `limits.maxBodySise`), an unknown field with the nearest valid name.
pub(super) fn read(file: &Path, text: &str) -> Result<FileSettings, ConfigError> {
    if text.trim().is_empty() {
        return Ok(FileSettings::default());
    }
    let de = serde_norway::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let field = if path == "." { String::new() } else { path };
        ConfigError::new(file, field.clone(), structural_message(&field, &inner))
    })
}

/// serde's message without the path it repeats, with a did-you-mean for an unknown field.
fn structural_message(path: &str, e: &serde_norway::Error) -> String {
    let text = e.to_string();
    // serde_norway starts its message with the path of the mapping or value it was reading
    // (for an unknown field, the mapping holding it): `path` or one of its parents.
    let text = match text.split_once(": ") {
        Some((head, rest)) if path.starts_with(head) => rest.to_owned(),
        _ => text,
    };
    match did_you_mean(&text) {
        Some(s) => format!("{text}: did you mean `{s}`?"),
        None => text,
    }
}

/// The valid field nearest to the unknown one of serde's "unknown field `x`, expected one
/// of `a`, `b`, ..." (or "expected `a` or `b`"), when it is close enough to be a typo.
fn did_you_mean(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (unknown, expected) = rest.split_once('`')?;
    let unknown = unknown.to_ascii_lowercase();
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|known| {
            let d = strsim::damerau_levenshtein(&unknown, &known.to_ascii_lowercase());
            (d, known)
        })
        .filter(|(d, known)| *d <= (known.len() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, known)| known.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_binary_whatever_the_unit_spelling() {
        for (text, bytes) in [
            ("512", 512),
            ("1K", 1024),
            ("1KB", 1024),
            ("1kb", 1024),
            ("2 KiB", 2048),
            ("1Ki", 1024),
            ("4MB", 4 << 20),
            ("4Mi", 4 << 20),
            ("1GB", 1 << 30),
        ] {
            assert_eq!(text.parse::<Size>(), Ok(Size(bytes)), "{text}");
        }
        assert_eq!(
            "4Xi".parse::<Size>(),
            Err("'4Xi' has an unknown unit".into())
        );
        assert_eq!(
            "1.5Mi".parse::<Size>().unwrap_err(),
            "'1.5Mi' has an unknown unit"
        );
        assert_eq!("lots".parse::<Size>().unwrap_err(), "'lots' is not a size");
        assert!("99999999999999999999G".parse::<Size>().is_err());
        assert_eq!(
            "18014398509481984G".parse::<Size>().unwrap_err(),
            "'18014398509481984G' is too large"
        );
    }

    #[test]
    fn durations_take_humantime_spellings_and_bare_seconds() {
        for (text, d) in [
            ("250ms", Duration::from_millis(250)),
            ("5s", Duration::from_secs(5)),
            ("1m30s", Duration::from_secs(90)),
            ("2h", Duration::from_secs(7200)),
            ("1m 30s", Duration::from_secs(90)),
            ("10", Duration::from_secs(10)),
            (" 3s ", Duration::from_secs(3)),
            ("0s", Duration::ZERO),
            ("100us", Duration::from_micros(100)),
        ] {
            assert_eq!(text.parse::<Dur>(), Ok(Dur(d)), "{text}");
        }
        let e = "soon".parse::<Dur>().unwrap_err();
        assert!(e.starts_with("'soon' is not a duration: "), "{e}");
        assert!("5 parsecs".parse::<Dur>().is_err());
    }

    #[test]
    fn unknown_fields_get_the_nearest_valid_name() {
        let msg = "unknown field `maxBodySise`, expected one of `maxBodySize`, `maxKeyLength`";
        assert_eq!(did_you_mean(msg).as_deref(), Some("maxBodySize"));
        let msg = "unknown field `colour`, expected `id` or `token`";
        assert_eq!(did_you_mean(msg), None, "nothing close");
        let msg = "unknown field `limts`, expected one of `apps`, `limits`, `actors`";
        assert_eq!(did_you_mean(msg).as_deref(), Some("limits"));
    }

    #[test]
    fn structural_problems_name_their_path() {
        let file = Path::new("mecha.yaml");
        let Err(e) = read(file, "limits:\n  maxBodySise: 4Mi\n") else {
            panic!("accepted a typo");
        };
        assert_eq!(e.field, "limits.maxBodySise");
        assert!(e.message.starts_with("unknown field `maxBodySise`"), "{e}");
        assert!(e.message.ends_with("did you mean `maxBodySize`?"), "{e}");
        assert!(
            !e.message.starts_with("limits"),
            "the path is not repeated: {e}"
        );
        assert!(
            e.to_string()
                .starts_with("mecha.yaml: limits.maxBodySise: unknown field"),
            "{e}"
        );
        let Err(e) = read(file, "apps:\n  - id: a\n  - token: t\n") else {
            panic!("accepted an app without id");
        };
        assert_eq!(e.field, "apps[1]");
        assert!(e.message.contains("missing field `id`"), "{e}");
        let Err(e) = read(file, "server:\n  workers: many\n") else {
            panic!("accepted a word as a number");
        };
        assert_eq!(e.field, "server.workers");
        let Err(e) = read(file, "server: [1]\n") else {
            panic!("accepted a list as a section");
        };
        assert_eq!(e.field, "server");
    }

    #[test]
    fn bad_values_are_kept_for_the_report_and_nulls_are_unset() {
        let f = read(
            Path::new("mecha.yaml"),
            "limits:\n  maxBodySize: lots\n  headerTimeout: ~\n  bodyTimeout: 7\n  maxMetadataBytes: 2048\n",
        )
        .ok()
        .unwrap();
        assert_eq!(
            f.limits.max_body_size,
            Checked::Bad("'lots' is not a size".into())
        );
        assert_eq!(f.limits.header_timeout, Checked::Unset);
        assert_eq!(
            f.limits.body_timeout,
            Checked::Set(Dur(Duration::from_secs(7)))
        );
        assert_eq!(f.limits.max_metadata_bytes, Checked::Set(Size(2048)));
    }
}
