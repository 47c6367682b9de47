//! API version negotiation (KIP-35, KIP-511).
//!
//! Each broker tells us, in its ApiVersions response, the range of versions it speaks
//! for every API. We speak the range of the message type we encode with
//! (`<Request as Message>::VERSIONS`), not `ApiKey::valid_versions()`, which over-reports
//! for some APIs in kafka-protocol 0.18. The version used is the highest in both.

use std::collections::HashMap;

use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};
use kafka_protocol::protocol::VersionRange;

use crate::error::{Error, ErrorKind, KafkaCode, Result};

/// The versions one broker supports, by API key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiVersionTable {
    ranges: HashMap<i16, VersionRange>,
}

impl ApiVersionTable {
    /// Builds the table from an ApiVersions response (which must carry no error).
    pub fn from_response(response: &ApiVersionsResponse) -> Result<Self> {
        Error::check_code(response.error_code)?;
        let ranges = response
            .api_keys
            .iter()
            .map(|k| {
                let range = VersionRange {
                    min: k.min_version,
                    max: k.max_version,
                };
                (k.api_key, range)
            })
            .collect();
        Ok(Self { ranges })
    }

    /// A table from explicit ranges; used by tests and by a broker that answered an
    /// older ApiVersions.
    pub fn from_ranges(ranges: impl IntoIterator<Item = (ApiKey, VersionRange)>) -> Self {
        Self {
            ranges: ranges.into_iter().map(|(k, r)| (k as i16, r)).collect(),
        }
    }

    /// The broker's range for `api`, if it supports it at all.
    pub fn broker_range(&self, api: ApiKey) -> Option<VersionRange> {
        self.ranges.get(&(api as i16)).copied()
    }

    /// The highest version both we (`ours`) and the broker support.
    pub fn negotiate(&self, api: ApiKey, ours: VersionRange) -> Result<i16> {
        let Some(theirs) = self.broker_range(api) else {
            return Err(Error::new(
                ErrorKind::UnsupportedVersion,
                format!("the broker does not support {api:?}"),
            )
            .with_api(api));
        };
        let common = theirs.intersect(&ours);
        if common.is_empty() {
            return Err(Error::new(
                ErrorKind::UnsupportedVersion,
                format!("no common version: broker speaks {theirs}, client speaks {ours}"),
            )
            .with_api(api));
        }
        Ok(common.max)
    }
}

/// What to do with an ApiVersions response that carries an error.
///
/// A broker that does not speak our ApiVersions version answers with a v0 response
/// holding UNSUPPORTED_VERSION and, usually, its own ApiVersions range in `api_keys`
/// (KIP-511). We retry with the highest version it does speak, or v0 if it lists none.
pub fn api_versions_fallback(response: &ApiVersionsResponse, tried: i16) -> Option<i16> {
    if KafkaCode::from_code(response.error_code) != Some(KafkaCode::UNSUPPORTED_VERSION) {
        return None;
    }
    let theirs = response
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::ApiVersions as i16)
        .map_or(0, |k| k.max_version);
    let next = theirs.min(tried - 1);
    (next >= 0).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::{MetadataRequest, OffsetCommitRequest};
    use kafka_protocol::protocol::Message;

    fn range(min: i16, max: i16) -> VersionRange {
        VersionRange { min, max }
    }

    fn response(error_code: i16, keys: &[(ApiKey, i16, i16)]) -> ApiVersionsResponse {
        ApiVersionsResponse::default()
            .with_error_code(error_code)
            .with_api_keys(
                keys.iter()
                    .map(|&(k, min, max)| {
                        ApiVersion::default()
                            .with_api_key(k as i16)
                            .with_min_version(min)
                            .with_max_version(max)
                    })
                    .collect(),
            )
    }

    #[test]
    fn picks_highest_common_version() {
        let table =
            ApiVersionTable::from_response(&response(0, &[(ApiKey::Metadata, 0, 12)])).unwrap();
        assert_eq!(table.negotiate(ApiKey::Metadata, range(0, 9)).unwrap(), 9);
        assert_eq!(table.negotiate(ApiKey::Metadata, range(4, 13)).unwrap(), 12);
    }

    #[test]
    fn message_type_range_not_api_key_range_is_ours() {
        // The broker advertises OffsetCommit up to 10, the encoder stops earlier.
        let table =
            ApiVersionTable::from_response(&response(0, &[(ApiKey::OffsetCommit, 0, 10)])).unwrap();
        let v = table
            .negotiate(ApiKey::OffsetCommit, OffsetCommitRequest::VERSIONS)
            .unwrap();
        assert_eq!(v, OffsetCommitRequest::VERSIONS.max.min(10));
        assert!(v <= OffsetCommitRequest::VERSIONS.max);
    }

    #[test]
    fn disjoint_or_missing_is_unsupported() {
        let table = ApiVersionTable::from_ranges([(ApiKey::Metadata, range(20, 30))]);
        let err = table
            .negotiate(ApiKey::Metadata, MetadataRequest::VERSIONS)
            .unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::UnsupportedVersion);
        let err = table.negotiate(ApiKey::Fetch, range(4, 17)).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::UnsupportedVersion);
    }

    #[test]
    fn error_response_is_not_a_table() {
        assert!(ApiVersionTable::from_response(&response(35, &[])).is_err());
    }

    #[test]
    fn unsupported_api_versions_falls_back_to_broker_max() {
        let resp = response(35, &[(ApiKey::ApiVersions, 0, 2)]);
        assert_eq!(api_versions_fallback(&resp, 4), Some(2));
        // No hint: step down to v0.
        assert_eq!(api_versions_fallback(&response(35, &[]), 3), Some(0));
        // Already at v0, nothing lower to try.
        assert_eq!(api_versions_fallback(&response(35, &[]), 0), None);
        // A hint at or above what we tried must still step down.
        assert_eq!(
            api_versions_fallback(&response(35, &[(ApiKey::ApiVersions, 0, 9)]), 3),
            Some(2)
        );
        // Other errors are not a version problem.
        assert_eq!(api_versions_fallback(&response(0, &[]), 3), None);
    }
}
