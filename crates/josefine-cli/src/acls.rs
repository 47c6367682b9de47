//! `josefine acls list | create | delete`, as `kafka-acls.sh --list | --add | --remove`.

use clap::{Args, Subcommand, ValueEnum};
use josefine::{
    AclBinding, AclFilter, AclOperation, AclPermission, Client, PatternType, ResourceType,
};

#[derive(Subcommand)]
pub enum AclsCommand {
    /// The ACLs that match: of a resource (and those that apply to it by prefix or
    /// `*`), of a principal, or all.
    List(FilterArgs),
    /// Create one ACL: allow or deny an operation on a resource to a principal.
    Create(CreateArgs),
    /// Delete the ACLs that match (a resource or a principal must be named, or --all).
    Delete {
        #[command(flatten)]
        filter: FilterArgs,
        /// Delete every ACL the filter matches even without a resource or principal.
        #[arg(long)]
        all: bool,
    },
}

/// Which resource (at most one).
#[derive(Args, Default)]
#[group(multiple = false)]
pub struct ResourceArgs {
    #[arg(long)]
    topic: Option<String>,
    #[arg(long)]
    group: Option<String>,
    #[arg(long = "transactional-id")]
    transactional_id: Option<String>,
    /// The cluster (kafka-cluster).
    #[arg(long)]
    cluster: bool,
}

impl ResourceArgs {
    fn resource(&self) -> Option<(ResourceType, String)> {
        let named = |t: ResourceType, n: &Option<String>| n.clone().map(|n| (t, n));
        named(ResourceType::Topic, &self.topic)
            .or_else(|| named(ResourceType::Group, &self.group))
            .or_else(|| named(ResourceType::TransactionalId, &self.transactional_id))
            .or_else(|| {
                self.cluster
                    .then(|| (ResourceType::Cluster, "kafka-cluster".to_string()))
            })
    }
}

#[derive(Args)]
pub struct FilterArgs {
    #[command(flatten)]
    resource: ResourceArgs,
    /// Only the ACLs with exactly this name (not those applying to it by prefix or `*`).
    #[arg(long)]
    literal: bool,
    /// User:NAME.
    #[arg(long)]
    principal: Option<String>,
    #[arg(long, value_enum)]
    operation: Option<Operation>,
}

#[derive(Args)]
pub struct CreateArgs {
    #[command(flatten)]
    resource: ResourceArgs,
    /// User:NAME (User:* for everyone).
    #[arg(long)]
    principal: String,
    #[arg(long, value_enum)]
    operation: Operation,
    /// Deny instead of allow (a deny wins over any allow).
    #[arg(long)]
    deny: bool,
    /// The name is a prefix: every resource whose name starts with it.
    #[arg(long)]
    prefixed: bool,
    /// Only from this host (default any: *).
    #[arg(long, default_value = "*")]
    host: String,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Operation {
    All,
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
}

impl Operation {
    fn acl(self) -> AclOperation {
        match self {
            Self::All => AclOperation::All,
            Self::Read => AclOperation::Read,
            Self::Write => AclOperation::Write,
            Self::Create => AclOperation::Create,
            Self::Delete => AclOperation::Delete,
            Self::Alter => AclOperation::Alter,
            Self::Describe => AclOperation::Describe,
            Self::ClusterAction => AclOperation::ClusterAction,
            Self::DescribeConfigs => AclOperation::DescribeConfigs,
            Self::AlterConfigs => AclOperation::AlterConfigs,
            Self::IdempotentWrite => AclOperation::IdempotentWrite,
        }
    }
}

impl FilterArgs {
    fn filter(&self) -> AclFilter {
        let mut filter = match self.resource.resource() {
            Some((t, name)) if self.literal => {
                let mut filter = AclFilter::applying_to(t, name);
                filter.pattern_type = PatternType::Literal;
                filter
            }
            Some((t, name)) => AclFilter::applying_to(t, name),
            None => AclFilter::all(),
        };
        filter.principal = self.principal.clone();
        if let Some(op) = self.operation {
            filter.operation = op.acl();
        }
        filter
    }
}

fn show(acl: &AclBinding) -> String {
    format!(
        "{:?}:{}{}  {}  {:?} {:?}  from {}",
        acl.resource_type,
        acl.resource_name,
        if acl.pattern_type == PatternType::Prefixed {
            "*  (prefix)"
        } else {
            ""
        },
        acl.principal,
        acl.permission,
        acl.operation,
        acl.host
    )
}

pub async fn run(client: &Client, command: AclsCommand) -> anyhow::Result<()> {
    let admin = client.admin();
    match command {
        AclsCommand::List(args) => {
            let acls = admin.describe_acls(&args.filter()).await?;
            if acls.is_empty() {
                println!("no ACLs match");
            }
            for acl in &acls {
                println!("{}", show(acl));
            }
        }
        AclsCommand::Create(args) => {
            let (resource_type, name) = args.resource.resource().ok_or_else(|| {
                anyhow::anyhow!(
                    "name the resource: --topic, --group, --transactional-id or --cluster"
                )
            })?;
            let mut acl = AclBinding::new(
                resource_type,
                name,
                &args.principal,
                args.operation.acl(),
                if args.deny {
                    AclPermission::Deny
                } else {
                    AclPermission::Allow
                },
            )
            .host(&args.host);
            if args.prefixed {
                acl = acl.prefixed();
            }
            anyhow::ensure!(
                args.principal.contains(':'),
                "a principal is TYPE:NAME, e.g. User:alice, not {:?}",
                args.principal
            );
            for (acl, result) in admin.create_acls(&[acl]).await? {
                result?;
                println!("created {}", show(&acl));
            }
        }
        AclsCommand::Delete { filter, all } => {
            anyhow::ensure!(
                all || filter.resource.resource().is_some() || filter.principal.is_some(),
                "name a resource (--topic, --group, --transactional-id, --cluster) or a \
                 --principal, or give --all to delete every ACL that matches"
            );
            let filter = filter.filter();
            let mut deleted = 0;
            for result in admin.delete_acls(&[filter]).await? {
                for acl in result? {
                    println!("deleted {}", show(&acl));
                    deleted += 1;
                }
            }
            if deleted == 0 {
                println!("no ACLs match");
            }
        }
    }
    Ok(())
}
