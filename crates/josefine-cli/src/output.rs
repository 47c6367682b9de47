//! How `josefine consume` prints a record: `text` (the value, UTF-8, one per line,
//! optionally `key<sep>value`), `json` (one object per line with every field; bytes
//! that are not UTF-8 as base64 with an `_encoding` marker) or `raw` (the value's bytes
//! untouched, then a newline), or a kcat-style template (`--format-string`).

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
    /// When set, used instead of `format`.
    pub template: Option<Template>,
    /// Print at most this many bytes of a key or value (`--max-bytes`): text and
    /// templates then mark the cut with `...[+N bytes]`, JSON with `value_truncated`
    /// (`key_truncated`) = N, raw only cuts.
    pub max_bytes: Option<usize>,
}

/// The first `max` bytes of `bytes` (backed off to a UTF-8 boundary when the cut
/// lands inside a character of otherwise valid text), and how many were left out.
fn clip(bytes: &[u8], max: Option<usize>) -> (&[u8], usize) {
    let Some(max) = max.filter(|&m| bytes.len() > m) else {
        return (bytes, 0);
    };
    let mut cut = max;
    if let Err(e) = std::str::from_utf8(&bytes[..cut]) {
        // Only an incomplete last character (no invalid byte before it) moves the cut.
        if e.error_len().is_none() {
            cut = e.valid_up_to();
        }
    }
    (&bytes[..cut], bytes.len() - cut)
}

/// `...[+N bytes]` after a cut, nothing otherwise.
fn marker(left_out: usize) -> String {
    if left_out == 0 {
        String::new()
    } else {
        format!("...[+{left_out} bytes]")
    }
}

/// kcat's `-f`: literal text with `%t` topic, `%p` partition, `%o` offset, `%T`
/// timestamp, `%k` key, `%s` value, `%K` / `%S` their lengths (-1 when null), `%h`
/// headers (`k=v` comma-separated), `%%`; `\n`, `\t`, `\\` escapes. Keys and values
/// are written as their bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(Vec<Piece>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(Vec<u8>),
    Topic,
    Partition,
    Offset,
    Timestamp,
    Key,
    Value,
    KeyLength,
    ValueLength,
    Headers,
}

impl Template {
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut pieces = Vec::new();
        let mut literal = Vec::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            let piece = match c {
                '%' => match chars.next() {
                    Some('t') => Piece::Topic,
                    Some('p') => Piece::Partition,
                    Some('o') => Piece::Offset,
                    Some('T') => Piece::Timestamp,
                    Some('k') => Piece::Key,
                    Some('s') => Piece::Value,
                    Some('K') => Piece::KeyLength,
                    Some('S') => Piece::ValueLength,
                    Some('h') => Piece::Headers,
                    Some('%') => {
                        literal.push(b'%');
                        continue;
                    }
                    other => bail!(
                        "--format-string {text:?}: unknown %{} (use %t %p %o %T %k %s %K %S %h or %%)",
                        other.map(String::from).unwrap_or_default()
                    ),
                },
                '\\' => {
                    let escaped = match chars.next() {
                        Some('n') => '\n',
                        Some('t') => '\t',
                        Some('\\') => '\\',
                        other => bail!(
                            "--format-string {text:?}: unknown escape \\{} (use \\n \\t or \\\\)",
                            other.map(String::from).unwrap_or_default()
                        ),
                    };
                    literal.extend_from_slice(escaped.to_string().as_bytes());
                    continue;
                }
                c => {
                    let mut buf = [0; 4];
                    literal.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    continue;
                }
            };
            if !literal.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(&mut literal)));
            }
            pieces.push(piece);
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(Self(pieces))
    }

    fn write(
        &self,
        out: &mut impl Write,
        topic: &str,
        partition: i32,
        record: &Record,
        max_bytes: Option<usize>,
    ) -> std::io::Result<()> {
        let length = |b: Option<&bytes::Bytes>| b.map_or(-1, |b| b.len() as i64);
        let clipped = |out: &mut dyn Write, b: Option<&bytes::Bytes>| -> std::io::Result<()> {
            let (shown, left_out) = clip(b.map_or(&[][..], |b| &b[..]), max_bytes);
            out.write_all(shown)?;
            out.write_all(marker(left_out).as_bytes())
        };
        for piece in &self.0 {
            match piece {
                Piece::Literal(bytes) => out.write_all(bytes)?,
                Piece::Topic => out.write_all(topic.as_bytes())?,
                Piece::Partition => write!(out, "{partition}")?,
                Piece::Offset => write!(out, "{}", record.offset())?,
                Piece::Timestamp => write!(out, "{}", record.timestamp())?,
                Piece::Key => clipped(out, record.key())?,
                Piece::Value => clipped(out, record.value())?,
                Piece::KeyLength => write!(out, "{}", length(record.key()))?,
                Piece::ValueLength => write!(out, "{}", length(record.value()))?,
                Piece::Headers => {
                    for (i, header) in record.headers().iter().enumerate() {
                        if i > 0 {
                            out.write_all(b",")?;
                        }
                        out.write_all(&header.key()[..])?;
                        out.write_all(b"=")?;
                        out.write_all(header.value().map_or(&[][..], |v| &v[..]))?;
                    }
                }
            }
        }
        Ok(())
    }
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
        if let Some(template) = &self.template {
            template.write(out, topic, partition, record, self.max_bytes)?;
            return Ok(());
        }
        let (value, value_left_out) =
            clip(record.value().map_or(&[][..], |v| &v[..]), self.max_bytes);
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
                    let (key, left_out) =
                        clip(record.key().map_or(&[][..], |k| &k[..]), self.max_bytes);
                    write!(out, "{}{}{separator}", text(key, "key")?, marker(left_out))?;
                }
                writeln!(out, "{}{}", text(value, "value")?, marker(value_left_out))?;
            }
            Format::Json => {
                let json = to_json(topic, partition, record, self.max_bytes);
                serde_json::to_writer(&mut *out, &json)?;
                out.write_all(b"\n")?;
            }
        }
        Ok(())
    }
}

/// Prints each partition's outcome of an admin call, `done` saying what happened to
/// it; fails, saying how many partitions kept their `what`, if any call failed.
pub fn print_outcomes<T>(
    outcomes: &[(josefine::TopicPartition, josefine::Result<T>)],
    done: impl Fn(&T) -> String,
    what: &str,
) -> anyhow::Result<()> {
    let mut failed = 0;
    for (tp, outcome) in outcomes {
        match outcome {
            Ok(value) => println!("{}/{}: {}", tp.topic, tp.partition, done(value)),
            Err(err) => {
                failed += 1;
                println!("{}/{}: {err}", tp.topic, tp.partition);
            }
        }
    }
    anyhow::ensure!(
        failed == 0,
        "{failed} of {} partition(s) kept their {what}",
        outcomes.len()
    );
    Ok(())
}

fn to_json(topic: &str, partition: i32, record: &Record, max_bytes: Option<usize>) -> Value {
    let mut object = Map::new();
    object.insert("topic".into(), json!(topic));
    object.insert("partition".into(), json!(partition));
    object.insert("offset".into(), json!(record.offset()));
    object.insert("timestamp".into(), json!(record.timestamp()));
    for (name, bytes) in [("key", record.key()), ("value", record.value())] {
        let (shown, left_out) = match bytes {
            Some(b) => {
                let (shown, left_out) = clip(b, max_bytes);
                (Some(shown), left_out)
            }
            None => (None, 0),
        };
        bytes_field(&mut object, name, shown);
        if left_out > 0 {
            object.insert(format!("{name}_truncated"), json!(left_out));
        }
    }
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
            template: None,
            max_bytes: None,
        };
        assert_eq!(print(&plain, &r).unwrap(), "hello\n");
        let keyed = Printer {
            format: Format::Text,
            key_separator: Some("\t".into()),
            template: None,
            max_bytes: None,
        };
        assert_eq!(print(&keyed, &r).unwrap(), "k\thello\n");
    }

    #[test]
    fn text_refuses_binary_and_says_what_to_use() {
        let r = record(None, &[0xff, 0xfe]);
        let plain = Printer {
            format: Format::Text,
            key_separator: None,
            template: None,
            max_bytes: None,
        };
        let err = print(&plain, &r).unwrap_err().to_string();
        assert!(err.contains("t/3@41 is not UTF-8"), "{err}");
        assert!(err.contains("--format json"), "{err}");
        let raw = Printer {
            format: Format::Raw,
            key_separator: None,
            template: None,
            max_bytes: None,
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
            template: None,
            max_bytes: None,
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

    #[test]
    fn a_template_prints_fields_like_kcat() {
        let r = record(Some(b"k"), b"hello");
        let printer = Printer {
            format: Format::Text,
            key_separator: None,
            template: Some(Template::parse("%t/%p@%o %T %k=%s (%K,%S) [%h] 100%%\\n").unwrap()),
            max_bytes: None,
        };
        assert_eq!(
            print(&printer, &r).unwrap(),
            "t/3@41 1700000000000 k=hello (1,5) [h=v] 100%\n"
        );
        for bad in ["%x", "trailing %", "\\q"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn max_bytes_cuts_keys_and_values_and_says_how_much() {
        // "héllo wörld": the cut at 2 lands inside é and backs off to "h".
        let r = record(Some("kéy".as_bytes()), "héllo wörld".as_bytes());
        let with = |format, template: Option<&str>| Printer {
            format,
            key_separator: Some(":".into()),
            template: template.map(|t| Template::parse(t).unwrap()),
            max_bytes: Some(2),
        };
        assert_eq!(
            print(&with(Format::Text, None), &r).unwrap(),
            "k...[+3 bytes]:h...[+12 bytes]\n"
        );
        assert_eq!(
            print(&with(Format::Text, Some("%s %S\\n")), &r).unwrap(),
            "h...[+12 bytes] 13\n",
            "lengths stay the real ones"
        );
        let v: Value =
            serde_json::from_str(&print(&with(Format::Json, None), &r).unwrap()).unwrap();
        assert_eq!(
            (v["value"].as_str(), v["value_truncated"].as_u64()),
            (Some("h"), Some(12))
        );
        assert_eq!(
            (v["key"].as_str(), v["key_truncated"].as_u64()),
            (Some("k"), Some(3))
        );
        assert_eq!(print(&with(Format::Raw, None), &r).unwrap(), "h\n");
        // Short enough: untouched, no marker.
        let short = record(Some(b"k"), b"ok");
        assert_eq!(print(&with(Format::Text, None), &short).unwrap(), "k:ok\n");
        // Binary bytes are cut where asked.
        assert_eq!(clip(&[0xff, 0xfe, 0xfd], Some(2)), (&[0xff, 0xfe][..], 1));
    }
}
