//! How `josefine consume` prints a record: `text` (the value, UTF-8, one per line,
//! optionally `key<sep>value`), `json` (one object per line with every field; bytes
//! that are not UTF-8 as base64 with an `_encoding` marker) or `raw` (the value's bytes
//! untouched, then a newline).

use std::io::Write;

use anyhow::bail;
use base64::Engine;
use clap::ValueEnum;
use josefine::Record;
use serde_json::{json, Map, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
    Raw,
}

/// Writes records in one format.
pub struct Printer {
    pub format: Format,
    /// `text`: print `key<sep>value` instead of the value alone.
    pub key_separator: Option<String>,
}

impl Printer {
    /// Writes one record. A value (or key) that is not UTF-8 under `text` is an error
    /// that says which record and what to use instead.
    pub fn write(
        &self,
        out: &mut impl Write,
        topic: &str,
        partition: i32,
        record: &Record,
    ) -> anyhow::Result<()> {
        let value = record.value().map_or(&[][..], |v| &v[..]);
        match self.format {
            Format::Raw => {
                out.write_all(value)?;
                out.write_all(b"\n")?;
            }
            Format::Text => {
                let text = |bytes: &[u8], what: &str| -> anyhow::Result<String> {
                    match std::str::from_utf8(bytes) {
                        Ok(s) => Ok(s.to_string()),
                        Err(_) => bail!(
                            "the {what} of {topic}/{partition}@{} is not UTF-8 text; \
                             use --format json (base64) or --format raw",
                            record.offset()
                        ),
                    }
                };
                if let Some(separator) = &self.key_separator {
                    let key = record.key().map_or(&[][..], |k| &k[..]);
                    write!(out, "{}{separator}", text(key, "key")?)?;
                }
                writeln!(out, "{}", text(value, "value")?)?;
            }
            Format::Json => {
                serde_json::to_writer(&mut *out, &to_json(topic, partition, record))?;
                out.write_all(b"\n")?;
            }
        }
        Ok(())
    }
}

fn to_json(topic: &str, partition: i32, record: &Record) -> Value {
    let mut object = Map::new();
    object.insert("topic".into(), json!(topic));
    object.insert("partition".into(), json!(partition));
    object.insert("offset".into(), json!(record.offset()));
    object.insert("timestamp".into(), json!(record.timestamp()));
    bytes_field(&mut object, "key", record.key().map(|b| &b[..]));
    bytes_field(&mut object, "value", record.value().map(|b| &b[..]));
    let headers: Vec<Value> = record
        .headers()
        .iter()
        .map(|h| {
            let mut header = Map::new();
            bytes_field(&mut header, "key", Some(&h.key()[..]));
            bytes_field(&mut header, "value", h.value().map(|b| &b[..]));
            Value::Object(header)
        })
        .collect();
    object.insert("headers".into(), Value::Array(headers));
    Value::Object(object)
}

/// `name`: the bytes as a string if UTF-8 (null if absent), else base64 with
/// `name_encoding: "base64"`.
fn bytes_field(object: &mut Map<String, Value>, name: &str, bytes: Option<&[u8]>) {
    match bytes.map(std::str::from_utf8) {
        None => {
            object.insert(name.into(), Value::Null);
        }
        Some(Ok(text)) => {
            object.insert(name.into(), json!(text));
        }
        Some(Err(_)) => {
            let encoded = base64::engine::general_purpose::STANDARD.encode(bytes.unwrap_or(&[]));
            object.insert(name.into(), json!(encoded));
            object.insert(format!("{name}_encoding"), json!("base64"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use josefine::protocol::records::{batches, BatchBuilder, DecodeOptions, Header};

    fn record(key: Option<&[u8]>, value: &[u8]) -> Record {
        let mut batch = BatchBuilder::new().base_offset(41);
        batch
            .push(
                1_700_000_000_000,
                key,
                Some(value),
                &[Header::new("h", Some(b"v"))],
            )
            .unwrap();
        let bytes = batch.finish().unwrap();
        let batch = batches(bytes, &DecodeOptions::default())
            .next()
            .unwrap()
            .unwrap();
        batch.records().next().unwrap().unwrap()
    }

    fn print(printer: &Printer, record: &Record) -> anyhow::Result<String> {
        let mut out = Vec::new();
        printer.write(&mut out, "t", 3, record)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    #[test]
    fn text_prints_values_and_optionally_keys() {
        let r = record(Some(b"k"), b"hello");
        let plain = Printer {
            format: Format::Text,
            key_separator: None,
        };
        assert_eq!(print(&plain, &r).unwrap(), "hello\n");
        let keyed = Printer {
            format: Format::Text,
            key_separator: Some("\t".into()),
        };
        assert_eq!(print(&keyed, &r).unwrap(), "k\thello\n");
    }

    #[test]
    fn text_refuses_binary_and_says_what_to_use() {
        let r = record(None, &[0xff, 0xfe]);
        let plain = Printer {
            format: Format::Text,
            key_separator: None,
        };
        let err = print(&plain, &r).unwrap_err().to_string();
        assert!(err.contains("t/3@41 is not UTF-8"), "{err}");
        assert!(err.contains("--format json"), "{err}");
        let raw = Printer {
            format: Format::Raw,
            key_separator: None,
        };
        let mut out = Vec::new();
        raw.write(&mut out, "t", 3, &r).unwrap();
        assert_eq!(out, [0xff, 0xfe, b'\n']);
    }

    #[test]
    fn json_has_every_field_and_base64_for_binary() {
        let json_printer = Printer {
            format: Format::Json,
            key_separator: None,
        };
        let line = print(&json_printer, &record(Some(b"k"), &[0xff])).unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["topic"], "t");
        assert_eq!(v["partition"], 3);
        assert_eq!(v["offset"], 41);
        assert_eq!(v["timestamp"], 1_700_000_000_000i64);
        assert_eq!(v["key"], "k");
        assert_eq!(v["value"], "/w==");
        assert_eq!(v["value_encoding"], "base64");
        assert_eq!(v["headers"][0]["key"], "h");
        assert_eq!(v["headers"][0]["value"], "v");
    }
}
