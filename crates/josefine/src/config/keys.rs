//! The Kafka properties Josefine understands: names as the Java client and librdkafka
//! spell them, and what kind of value each takes.

/// What a property's value must look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Free text.
    Text,
    /// A comma-separated list of non-empty items.
    List,
    /// A non-negative number of milliseconds.
    Millis,
    /// A non-negative integer (bytes, counts).
    Count,
    /// Any integer.
    Int,
    Bool,
    /// One of these words (case-insensitive).
    OneOf(&'static [&'static str]),
}

/// Every known property and its kind, sorted by name.
pub(crate) const KEYS: &[(&str, Kind)] = &[
    ("acks", Kind::OneOf(&["all", "-1", "0", "1"])),
    ("allow.auto.create.topics", Kind::Bool),
    ("auto.commit.interval.ms", Kind::Millis),
    (
        "auto.offset.reset",
        Kind::OneOf(&["earliest", "latest", "none"]),
    ),
    ("batch.size", Kind::Count),
    ("bootstrap.servers", Kind::List),
    ("buffer.memory", Kind::Count),
    ("check.crcs", Kind::Bool),
    ("client.id", Kind::Text),
    ("compression.level", Kind::Int),
    (
        "compression.type",
        Kind::OneOf(&["none", "gzip", "snappy", "lz4", "zstd"]),
    ),
    ("delivery.timeout.ms", Kind::Millis),
    ("enable.auto.commit", Kind::Bool),
    ("enable.idempotence", Kind::Bool),
    ("fetch.max.bytes", Kind::Count),
    ("fetch.max.wait.ms", Kind::Millis),
    ("fetch.min.bytes", Kind::Count),
    ("group.id", Kind::Text),
    ("group.instance.id", Kind::Text),
    ("group.protocol", Kind::OneOf(&["classic", "consumer"])),
    ("group.remote.assignor", Kind::Text),
    ("heartbeat.interval.ms", Kind::Millis),
    (
        "isolation.level",
        Kind::OneOf(&["read_uncommitted", "read_committed"]),
    ),
    ("linger.ms", Kind::Millis),
    ("max.block.ms", Kind::Millis),
    ("max.in.flight.requests.per.connection", Kind::Count),
    ("max.partition.fetch.bytes", Kind::Count),
    ("max.poll.interval.ms", Kind::Millis),
    ("max.request.size", Kind::Count),
    ("metadata.max.age.ms", Kind::Millis),
    ("partition.assignment.strategy", Kind::List),
    ("queued.max.messages.kbytes", Kind::Count),
    ("reconnect.backoff.max.ms", Kind::Millis),
    ("reconnect.backoff.ms", Kind::Millis),
    ("request.timeout.ms", Kind::Millis),
    ("retries", Kind::Count),
    ("retry.backoff.max.ms", Kind::Millis),
    ("retry.backoff.ms", Kind::Millis),
    (
        "sasl.mechanism",
        Kind::OneOf(&["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]),
    ),
    ("sasl.password", Kind::Text),
    ("sasl.username", Kind::Text),
    (
        "security.protocol",
        Kind::OneOf(&["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"]),
    ),
    ("session.timeout.ms", Kind::Millis),
    ("socket.connection.setup.timeout.ms", Kind::Millis),
    ("ssl.ca.location", Kind::Text),
    ("ssl.certificate.location", Kind::Text),
    (
        "ssl.endpoint.identification.algorithm",
        Kind::OneOf(&["https", "none"]),
    ),
    ("ssl.key.location", Kind::Text),
    ("transaction.timeout.ms", Kind::Millis),
    ("transactional.id", Kind::Text),
];

pub(crate) fn kind(key: &str) -> Option<Kind> {
    KEYS.binary_search_by(|(k, _)| k.cmp(&key))
        .ok()
        .map(|i| KEYS[i].1)
}

/// Checks `value` against `kind`; the error says what was expected.
pub(crate) fn check(kind: Kind, value: &str) -> Result<(), String> {
    let value = value.trim();
    match kind {
        Kind::Text => Ok(()),
        Kind::List => {
            if value.split(',').all(|item| !item.trim().is_empty()) {
                Ok(())
            } else {
                Err("expected a comma-separated list without empty items".into())
            }
        }
        Kind::Millis => value
            .parse::<u64>()
            .map(drop)
            .map_err(|_| "expected a whole number of milliseconds, like 3000".into()),
        Kind::Count => value
            .parse::<u64>()
            .map(drop)
            .map_err(|_| "expected a non-negative whole number".into()),
        Kind::Int => value
            .parse::<i64>()
            .map(drop)
            .map_err(|_| "expected a whole number".into()),
        Kind::Bool => match value.to_ascii_lowercase().as_str() {
            "true" | "false" => Ok(()),
            _ => Err("expected true or false".into()),
        },
        Kind::OneOf(words) => {
            if words.iter().any(|w| w.eq_ignore_ascii_case(value)) {
                Ok(())
            } else {
                Err(format!("expected one of {}", words.join(", ")))
            }
        }
    }
}

/// Up to three known keys closest to `key` (by edit distance, then name), for "did
/// you mean" hints; none that are too far to be a typo.
pub(crate) fn closest(key: &str) -> Vec<&'static str> {
    let limit = (key.len() / 3).max(3);
    let mut scored: Vec<(usize, &'static str)> = KEYS
        .iter()
        .map(|(k, _)| (edit_distance(key, k), *k))
        .filter(|(d, _)| *d <= limit)
        .collect();
    scored.sort();
    scored.into_iter().take(3).map(|(_, k)| k).collect()
}

/// Levenshtein distance over bytes (keys are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, &ca) in a.iter().enumerate() {
        current[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_so_lookups_work() {
        assert!(KEYS.windows(2).all(|w| w[0].0 < w[1].0));
        for (key, kind_of) in KEYS {
            assert_eq!(kind(key), Some(*kind_of));
        }
        assert_eq!(kind("no.such.key"), None);
    }

    #[test]
    fn typos_suggest_the_intended_key() {
        assert_eq!(closest("sesion.timeout.ms")[0], "session.timeout.ms");
        assert_eq!(closest("bootstrap.server")[0], "bootstrap.servers");
        assert_eq!(closest("group_id")[0], "group.id");
        assert!(closest("completely.unrelated.thing.here").is_empty());
    }

    #[test]
    fn values_are_checked_by_kind() {
        assert!(check(Kind::Millis, "3000").is_ok());
        assert!(check(Kind::Millis, "3s")
            .unwrap_err()
            .contains("milliseconds"));
        assert!(check(Kind::Bool, "TRUE").is_ok());
        assert!(check(Kind::Bool, "yes").is_err());
        assert!(check(Kind::OneOf(&["earliest", "latest"]), "Earliest").is_ok());
        assert!(check(Kind::OneOf(&["earliest", "latest"]), "first")
            .unwrap_err()
            .contains("earliest, latest"));
        assert!(check(Kind::List, "a:1,b:2").is_ok());
        assert!(check(Kind::List, "a:1,,b:2").is_err());
        assert!(check(Kind::Int, "-3").is_ok());
        assert!(check(Kind::Count, "-3").is_err());
    }

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
