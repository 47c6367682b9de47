//! ACLs: **CreateAcls** (key 30), **DescribeAcls** (key 29) and **DeleteAcls** (key
//! 31), as `kafka-acls.sh` uses them. Each goes to one broker, which forwards it to the
//! controller (KRaft).
//!
//! An [`AclBinding`] is one rule: a resource pattern (type, name, literal or prefixed)
//! and an entry (principal, host, operation, allow or deny). An [`AclFilter`] selects
//! rules with Kafka's filter semantics: `Any` (and a `None` name, principal or host)
//! matches everything; a resource name with [`PatternType::Match`] selects the rules
//! that apply to that name: literal ones with that name or `*`, and prefixed ones whose
//! prefix it starts with. Creations and deletions answer per binding or filter, never
//! all or nothing: the result says which failed and why.

use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest};
use kafka_protocol::protocol::StrBytes;

use super::Admin;
use crate::error::{Error, Result};

/// What an ACL protects (Kafka's `ResourceType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ResourceType {
    /// Filters only: every type.
    Any,
    /// Topics (`--topic`): Read, Write, Describe, Create, Delete, Alter, and the configs
    /// operations.
    Topic,
    /// Consumer groups (`--group`): Read to join and commit, Describe, Delete.
    Group,
    /// The cluster itself (name `kafka-cluster`): Create topics, Alter, ClusterAction,
    /// IdempotentWrite, ...
    Cluster,
    /// Transactional ids (`--transactional-id`): Write to use one, Describe.
    TransactionalId,
    /// Delegation tokens (KIP-48).
    DelegationToken,
    /// Users, for the CreateTokens and DescribeTokens operations on their behalf (KIP-373).
    User,
    /// A type this client does not know (the wire value).
    Unknown(i8),
}

/// How an ACL's resource name matches (Kafka's `PatternType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum PatternType {
    /// Filters only: every pattern type.
    Any,
    /// Filters only: the rules that apply to the named resource (literal, `*`, and
    /// prefixes of the name).
    Match,
    /// The exact name (or `*`: every resource of the type).
    Literal,
    /// Every resource whose name starts with it.
    Prefixed,
    /// A pattern type this client does not know (the wire value).
    Unknown(i8),
}

/// What an ACL allows or denies (Kafka's `AclOperation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum AclOperation {
    /// Filters only: every operation.
    Any,
    /// Every operation.
    All,
    /// Read records of a topic; join a group and commit its offsets.
    Read,
    /// Produce to a topic; use a transactional id.
    Write,
    /// Create topics (on the cluster or on a topic name).
    Create,
    /// Delete topics, records, groups or their offsets.
    Delete,
    /// Change a resource, such as a topic's partition count or an ACL on the cluster.
    Alter,
    /// See that a resource exists and read its metadata (offsets, members).
    Describe,
    /// Broker-to-broker requests (replication, controller); for brokers' principals only.
    ClusterAction,
    /// Read a resource's configs (DescribeConfigs).
    DescribeConfigs,
    /// Change a resource's configs (AlterConfigs, IncrementalAlterConfigs).
    AlterConfigs,
    /// Produce idempotently, on the cluster (since Kafka 3.0 Write on a topic also allows
    /// it).
    IdempotentWrite,
    /// Create delegation tokens.
    CreateTokens,
    /// Describe delegation tokens.
    DescribeTokens,
    /// Two-phase-commit transactions (KIP-939), on a transactional id.
    TwoPhaseCommit,
    /// An operation this client does not know (the wire value).
    Unknown(i8),
}

/// Allow or deny (Kafka's `AclPermissionType`); a deny wins over any allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum AclPermission {
    /// Filters only: both.
    Any,
    /// Deny the operation; wins over any allow.
    Deny,
    /// Allow the operation.
    Allow,
    /// A permission type this client does not know (the wire value).
    Unknown(i8),
}

/// One ACL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub struct AclBinding {
    /// What kind of resource the ACL protects.
    pub resource_type: ResourceType,
    /// `*` with [`PatternType::Literal`]: every resource of the type. The cluster's
    /// name is `kafka-cluster`.
    pub resource_name: String,
    /// How `resource_name` matches: literally (or `*`) or as a prefix.
    pub pattern_type: PatternType,
    /// `User:alice`, `User:*`.
    pub principal: String,
    /// The client's address, or `*` for any.
    pub host: String,
    /// The operation allowed or denied.
    pub operation: AclOperation,
    /// Allow or deny.
    pub permission: AclPermission,
}

impl AclBinding {
    /// `permission` of `operation` on the resource for `principal` from any host, the
    /// name matched literally.
    pub fn new(
        resource_type: ResourceType,
        resource_name: impl Into<String>,
        principal: impl Into<String>,
        operation: AclOperation,
        permission: AclPermission,
    ) -> Self {
        Self {
            resource_type,
            resource_name: resource_name.into(),
            pattern_type: PatternType::Literal,
            principal: principal.into(),
            host: "*".into(),
            operation,
            permission,
        }
    }

    /// The name is a prefix: the ACL covers every resource whose name starts with it.
    pub fn prefixed(mut self) -> Self {
        self.pattern_type = PatternType::Prefixed;
        self
    }

    /// Only for clients connecting from `host`.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = host.into();
        self
    }

    /// The filter that selects exactly this ACL.
    pub fn to_filter(&self) -> AclFilter {
        AclFilter {
            resource_type: self.resource_type,
            resource_name: Some(self.resource_name.clone()),
            pattern_type: self.pattern_type,
            principal: Some(self.principal.clone()),
            host: Some(self.host.clone()),
            operation: self.operation,
            permission: self.permission,
        }
    }

    fn check(&self) -> Result<()> {
        let concrete = !matches!(
            self.resource_type,
            ResourceType::Any | ResourceType::Unknown(_)
        ) && matches!(
            self.pattern_type,
            PatternType::Literal | PatternType::Prefixed
        ) && !matches!(self.operation, AclOperation::Any | AclOperation::Unknown(_))
            && matches!(self.permission, AclPermission::Allow | AclPermission::Deny);
        if !concrete {
            return Err(Error::config(format!(
                "an ACL to create needs a resource type, a literal or prefixed name, an \
                 operation and allow or deny, not Any or Match: {self:?}"
            )));
        }
        if self.resource_name.is_empty() || self.principal.is_empty() || self.host.is_empty() {
            return Err(Error::config(
                "an ACL needs a resource name, a principal (User:NAME) and a host (* for any)",
            ));
        }
        Ok(())
    }
}

/// Selects ACLs; see the module docs for the matching rules. [`AclFilter::all`]
/// matches every ACL.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AclFilter {
    /// The resource type; [`ResourceType::Any`] for every type.
    pub resource_type: ResourceType,
    /// `None`: any name.
    pub resource_name: Option<String>,
    /// How the name is matched; [`PatternType::Any`] for every pattern type,
    /// [`PatternType::Match`] for the rules that apply to the name.
    pub pattern_type: PatternType,
    /// `None`: any principal.
    pub principal: Option<String>,
    /// `None`: any host.
    pub host: Option<String>,
    /// The operation; [`AclOperation::Any`] for every operation.
    pub operation: AclOperation,
    /// Allow or deny; [`AclPermission::Any`] for both.
    pub permission: AclPermission,
}

impl AclFilter {
    /// Every ACL.
    pub fn all() -> Self {
        Self {
            resource_type: ResourceType::Any,
            resource_name: None,
            pattern_type: PatternType::Any,
            principal: None,
            host: None,
            operation: AclOperation::Any,
            permission: AclPermission::Any,
        }
    }

    /// The ACLs that apply to this resource (literal, `*` and prefixes: Match).
    pub fn applying_to(resource_type: ResourceType, name: impl Into<String>) -> Self {
        Self {
            resource_type,
            resource_name: Some(name.into()),
            pattern_type: PatternType::Match,
            ..Self::all()
        }
    }

    /// Only the ACLs of `principal`.
    pub fn principal(mut self, principal: impl Into<String>) -> Self {
        self.principal = Some(principal.into());
        self
    }
}

fn wire(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

impl ResourceType {
    fn code(self) -> i8 {
        match self {
            Self::Any => 1,
            Self::Topic => 2,
            Self::Group => 3,
            Self::Cluster => 4,
            Self::TransactionalId => 5,
            Self::DelegationToken => 6,
            Self::User => 7,
            Self::Unknown(code) => code,
        }
    }

    fn from_code(code: i8) -> Self {
        match code {
            1 => Self::Any,
            2 => Self::Topic,
            3 => Self::Group,
            4 => Self::Cluster,
            5 => Self::TransactionalId,
            6 => Self::DelegationToken,
            7 => Self::User,
            other => Self::Unknown(other),
        }
    }
}

impl PatternType {
    fn code(self) -> i8 {
        match self {
            Self::Any => 1,
            Self::Match => 2,
            Self::Literal => 3,
            Self::Prefixed => 4,
            Self::Unknown(code) => code,
        }
    }

    fn from_code(code: i8) -> Self {
        match code {
            1 => Self::Any,
            2 => Self::Match,
            3 => Self::Literal,
            4 => Self::Prefixed,
            other => Self::Unknown(other),
        }
    }
}

const OPERATIONS: [(AclOperation, i8); 15] = [
    (AclOperation::Any, 1),
    (AclOperation::All, 2),
    (AclOperation::Read, 3),
    (AclOperation::Write, 4),
    (AclOperation::Create, 5),
    (AclOperation::Delete, 6),
    (AclOperation::Alter, 7),
    (AclOperation::Describe, 8),
    (AclOperation::ClusterAction, 9),
    (AclOperation::DescribeConfigs, 10),
    (AclOperation::AlterConfigs, 11),
    (AclOperation::IdempotentWrite, 12),
    (AclOperation::CreateTokens, 13),
    (AclOperation::DescribeTokens, 14),
    (AclOperation::TwoPhaseCommit, 15),
];

impl AclOperation {
    fn code(self) -> i8 {
        match self {
            Self::Unknown(code) => code,
            known => OPERATIONS
                .iter()
                .find(|(op, _)| *op == known)
                .map_or(0, |(_, code)| *code),
        }
    }

    fn from_code(code: i8) -> Self {
        OPERATIONS
            .iter()
            .find(|(_, c)| *c == code)
            .map_or(Self::Unknown(code), |(op, _)| *op)
    }
}

impl AclPermission {
    fn code(self) -> i8 {
        match self {
            Self::Any => 1,
            Self::Deny => 2,
            Self::Allow => 3,
            Self::Unknown(code) => code,
        }
    }

    fn from_code(code: i8) -> Self {
        match code {
            1 => Self::Any,
            2 => Self::Deny,
            3 => Self::Allow,
            other => Self::Unknown(other),
        }
    }
}

impl Admin {
    /// Creates `acls`; each gets its own outcome (in order). A binding with `Any` or
    /// `Match` in it is refused before anything is sent.
    pub async fn create_acls(&self, acls: &[AclBinding]) -> Result<Vec<(AclBinding, Result<()>)>> {
        for acl in acls {
            acl.check()?;
        }
        if acls.is_empty() {
            return Ok(Vec::new());
        }
        let request = CreateAclsRequest::default().with_creations(
            acls.iter()
                .map(|acl| {
                    AclCreation::default()
                        .with_resource_type(acl.resource_type.code())
                        .with_resource_name(wire(&acl.resource_name))
                        .with_resource_pattern_type(acl.pattern_type.code())
                        .with_principal(wire(&acl.principal))
                        .with_host(wire(&acl.host))
                        .with_operation(acl.operation.code())
                        .with_permission_type(acl.permission.code())
                })
                .collect(),
        );
        let broker = self.client.controller().await?;
        let response = broker.call(&request).await?;
        if response.results.len() != acls.len() {
            return Err(Error::protocol(format!(
                "CreateAcls answered {} results for {} ACLs",
                response.results.len(),
                acls.len()
            )));
        }
        Ok(acls
            .iter()
            .cloned()
            .zip(
                response
                    .results
                    .iter()
                    .map(|r| Error::check_code_with(r.error_code, r.error_message.as_deref())),
            )
            .collect())
    }

    /// The ACLs `filter` selects, sorted.
    pub async fn describe_acls(&self, filter: &AclFilter) -> Result<Vec<AclBinding>> {
        let request = DescribeAclsRequest::default()
            .with_resource_type_filter(filter.resource_type.code())
            .with_resource_name_filter(filter.resource_name.as_deref().map(wire))
            .with_pattern_type_filter(filter.pattern_type.code())
            .with_principal_filter(filter.principal.as_deref().map(wire))
            .with_host_filter(filter.host.as_deref().map(wire))
            .with_operation(filter.operation.code())
            .with_permission_type(filter.permission.code());
        let broker = self.client.controller().await?;
        let response = broker.call(&request).await?;
        Error::check_code_with(response.error_code, response.error_message.as_deref())?;
        let mut acls: Vec<AclBinding> = response
            .resources
            .iter()
            .flat_map(|resource| {
                resource.acls.iter().map(move |acl| AclBinding {
                    resource_type: ResourceType::from_code(resource.resource_type),
                    resource_name: resource.resource_name.to_string(),
                    pattern_type: PatternType::from_code(resource.pattern_type),
                    principal: acl.principal.to_string(),
                    host: acl.host.to_string(),
                    operation: AclOperation::from_code(acl.operation),
                    permission: AclPermission::from_code(acl.permission_type),
                })
            })
            .collect();
        acls.sort();
        Ok(acls)
    }

    /// Deletes the ACLs each of `filters` selects; per filter (in order), the ACLs it
    /// deleted or why it could not.
    pub async fn delete_acls(&self, filters: &[AclFilter]) -> Result<Vec<Result<Vec<AclBinding>>>> {
        if filters.is_empty() {
            return Ok(Vec::new());
        }
        let request = DeleteAclsRequest::default().with_filters(
            filters
                .iter()
                .map(|f| {
                    DeleteAclsFilter::default()
                        .with_resource_type_filter(f.resource_type.code())
                        .with_resource_name_filter(f.resource_name.as_deref().map(wire))
                        .with_pattern_type_filter(f.pattern_type.code())
                        .with_principal_filter(f.principal.as_deref().map(wire))
                        .with_host_filter(f.host.as_deref().map(wire))
                        .with_operation(f.operation.code())
                        .with_permission_type(f.permission.code())
                })
                .collect(),
        );
        let broker = self.client.controller().await?;
        let response = broker.call(&request).await?;
        if response.filter_results.len() != filters.len() {
            return Err(Error::protocol(format!(
                "DeleteAcls answered {} results for {} filters",
                response.filter_results.len(),
                filters.len()
            )));
        }
        Ok(response
            .filter_results
            .iter()
            .map(|result| {
                Error::check_code_with(result.error_code, result.error_message.as_deref())?;
                let mut deleted = Vec::new();
                for m in &result.matching_acls {
                    Error::check_code_with(m.error_code, m.error_message.as_deref())?;
                    deleted.push(AclBinding {
                        resource_type: ResourceType::from_code(m.resource_type),
                        resource_name: m.resource_name.to_string(),
                        pattern_type: PatternType::from_code(m.pattern_type),
                        principal: m.principal.to_string(),
                        host: m.host.to_string(),
                        operation: AclOperation::from_code(m.operation),
                        permission: AclPermission::from_code(m.permission_type),
                    });
                }
                deleted.sort();
                Ok(deleted)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknown_ones_are_kept() {
        for code in 0..20 {
            assert_eq!(ResourceType::from_code(code).code(), code);
            assert_eq!(PatternType::from_code(code).code(), code);
            assert_eq!(AclOperation::from_code(code).code(), code);
            assert_eq!(AclPermission::from_code(code).code(), code);
        }
        assert_eq!(AclOperation::from_code(3), AclOperation::Read);
        assert_eq!(ResourceType::from_code(3), ResourceType::Group);
    }

    #[test]
    fn a_binding_to_create_must_be_concrete() {
        let ok = AclBinding::new(
            ResourceType::Topic,
            "t",
            "User:alice",
            AclOperation::Read,
            AclPermission::Allow,
        );
        assert!(ok.check().is_ok());
        assert!(ok.clone().prefixed().check().is_ok());
        let mut any = ok.clone();
        any.operation = AclOperation::Any;
        assert!(any.check().is_err());
        let mut matching = ok.clone();
        matching.pattern_type = PatternType::Match;
        assert!(matching.check().is_err());
        let mut nobody = ok;
        nobody.principal.clear();
        assert!(nobody
            .check()
            .unwrap_err()
            .to_string()
            .contains("User:NAME"));
    }
}
