//! `acl bootstrap`, `acl role create|list|delete`, `acl token create|list|revoke`:
//! roles and tokens of a cluster run with `--auth`.

use clap::Subcommand;
use kv_client::{Access, Client, Permission, Role};

use crate::output::{Failure, Printer};

#[derive(Debug, Subcommand)]
pub enum AclCommand {
    /// Make the cluster's root token (once per cluster); it is printed once.
    Bootstrap,
    /// Roles: what keys a token may read or write, and admin.
    #[command(subcommand)]
    Role(RoleCommand),
    /// Tokens: secrets that hold roles.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// Create (or replace) role NAME.
    Create {
        /// The role's name.
        name: String,
        /// Key prefixes it may read (repeatable; "" is every key).
        #[arg(long, value_name = "PREFIX", num_args = 1..)]
        read: Vec<String>,
        /// Key prefixes it may read and write (repeatable).
        #[arg(long, value_name = "PREFIX", num_args = 1..)]
        readwrite: Vec<String>,
        /// It may change the members, roles and tokens.
        #[arg(long)]
        admin: bool,
    },
    /// List the roles.
    List,
    /// Delete role NAME; tokens holding it lose its permissions.
    Delete {
        /// The role's name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make token NAME holding roles; its secret is printed once.
    Create {
        /// The token's name, unique in the cluster.
        name: String,
        /// A role it holds (repeatable).
        #[arg(long = "role", value_name = "ROLE")]
        roles: Vec<String>,
    },
    /// List the tokens (names, roles, creation times; never secrets).
    List,
    /// Revoke token NAME.
    Revoke {
        /// The token's name.
        name: String,
    },
}

pub async fn run(client: &Client, printer: &Printer, command: AclCommand) -> Result<(), Failure> {
    match command {
        AclCommand::Bootstrap => {
            let root = client.acl_bootstrap().await?;
            if printer.is_json() {
                return printer.json(&root);
            }
            printer.line(format!(
                "root token (shown once, keep it safe): {}",
                root.token
            ))
        }
        AclCommand::Role(command) => role(client, printer, command).await,
        AclCommand::Token(command) => token(client, printer, command).await,
    }
}

async fn role(client: &Client, printer: &Printer, command: RoleCommand) -> Result<(), Failure> {
    match command {
        RoleCommand::Create {
            name,
            read,
            readwrite,
            admin,
        } => {
            let grant = |prefixes: Vec<String>, access| {
                prefixes
                    .into_iter()
                    .map(move |prefix| Permission { prefix, access })
            };
            let role = Role {
                name,
                permissions: grant(read, Access::Read)
                    .chain(grant(readwrite, Access::ReadWrite))
                    .collect(),
                admin,
            };
            let role = client.put_role(&role).await?;
            if printer.is_json() {
                return printer.json(&role);
            }
            printer.line(format!("role {} saved", role.name))
        }
        RoleCommand::List => {
            let roles = client.roles().await?;
            if printer.is_json() {
                return printer.json(&roles);
            }
            printer.table(
                &["NAME", "READ", "READWRITE", "ADMIN"],
                roles.iter().map(|role| {
                    let prefixes = |access| {
                        role.permissions
                            .iter()
                            .filter(|granted| granted.access == access)
                            .map(|granted| format!("{:?}", granted.prefix))
                            .collect::<Vec<_>>()
                            .join(",")
                    };
                    vec![
                        role.name.clone(),
                        prefixes(Access::Read),
                        prefixes(Access::ReadWrite),
                        role.admin.to_string(),
                    ]
                }),
            )
        }
        RoleCommand::Delete { name } => {
            client.delete_role(&name).await?;
            if printer.is_json() {
                return printer.json(&serde_json::json!({"deleted": name}));
            }
            printer.line(format!("role {name} deleted"))
        }
    }
}

async fn token(client: &Client, printer: &Printer, command: TokenCommand) -> Result<(), Failure> {
    match command {
        TokenCommand::Create { name, roles } => {
            let roles: Vec<&str> = roles.iter().map(String::as_str).collect();
            let token = client.create_token(&name, &roles).await?;
            if printer.is_json() {
                return printer.json(&token);
            }
            printer.line(format!(
                "token {} (shown once, keep it safe): {}",
                token.name, token.token
            ))
        }
        TokenCommand::List => {
            let tokens = client.tokens().await?;
            if printer.is_json() {
                return printer.json(&tokens);
            }
            printer.table(
                &["NAME", "ROLES", "CREATED_MS"],
                tokens.iter().map(|token| {
                    vec![
                        token.name.clone(),
                        token.roles.join(","),
                        token.created_ms.to_string(),
                    ]
                }),
            )
        }
        TokenCommand::Revoke { name } => {
            client.revoke_token(&name).await?;
            if printer.is_json() {
                return printer.json(&serde_json::json!({"revoked": name}));
            }
            printer.line(format!("token {name} revoked"))
        }
    }
}
