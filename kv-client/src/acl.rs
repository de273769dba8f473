//! Roles and tokens (`/v1/acl`), for clusters run with `--auth`.
//!
//! A call needs a token with an admin role (root has one), given with
//! [`crate::ClientBuilder::token`]; [`Client::acl_bootstrap`] needs none.

use rand::Rng;
use reqwest::Method;
use schemas::api::{Bootstrap, CreateToken, CreatedToken, Role, RoleList, TokenInfo, TokenList};

use crate::client::Client;
use crate::error::Result;
use crate::request::Request;

impl Client {
    /// Makes the cluster's root token, once per cluster; a second call is
    /// refused with `acl_already_bootstrapped`. The secret is in this
    /// answer only. The client makes it and sends it, so a retry after a
    /// lost answer is answered the same root token rather than refused with
    /// the secret lost.
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// let root = client.acl_bootstrap().await?;
    /// println!("root token: {}", root.token);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn acl_bootstrap(&self) -> Result<CreatedToken> {
        let body = crate::kv::to_json(&Bootstrap {
            token: Some(new_secret()),
        })?;
        let request = Request::write(Method::POST, ["v1", "acl", "bootstrap"]).json(body);
        self.call(&request).await?.success()?.json()
    }

    /// Creates or replaces a role.
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// use kv_client::{Access, Permission, Role};
    /// client.put_role(&Role {
    ///     name: "brokers".into(),
    ///     permissions: vec![Permission { prefix: "topics/".into(), access: Access::ReadWrite }],
    ///     admin: false,
    /// }).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn put_role(&self, role: &Role) -> Result<Role> {
        acl_name(&role.name)?;
        let body = crate::kv::to_json(role)?;
        let request = Request::write(
            Method::PUT,
            [
                "v1".to_string(),
                "acl".into(),
                "roles".into(),
                role.name.clone(),
            ],
        )
        .json(body);
        self.call(&request).await?.success()?.json()
    }

    /// Every role, in name order.
    pub async fn roles(&self) -> Result<Vec<Role>> {
        let request = Request::new(Method::GET, ["v1", "acl", "roles"]);
        let list: RoleList = self.call(&request).await?.success()?.json()?;
        Ok(list.roles)
    }

    /// Deletes a role; tokens holding it lose its permissions.
    pub async fn delete_role(&self, name: &str) -> Result<()> {
        let request = Request::write(Method::DELETE, ["v1", "acl", "roles", acl_name(name)?]);
        self.call(&request).await?.success()?;
        Ok(())
    }

    /// Makes a token holding `roles` (each must exist). The secret is in
    /// this answer only; the client makes it, so a retry after a lost
    /// answer is answered the same token (see [`Client::acl_bootstrap`]).
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// let token = client.create_token("broker-a", &["brokers"]).await?;
    /// let broker = kv_client::ClientBuilder::new(["http://127.0.0.1:7070"])
    ///     .token(&token.token)
    ///     .build()?;
    /// # let _ = broker;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn create_token(&self, name: &str, roles: &[&str]) -> Result<CreatedToken> {
        acl_name(name)?;
        let body = crate::kv::to_json(&CreateToken {
            name: name.to_string(),
            roles: roles.iter().map(|role| role.to_string()).collect(),
            token: Some(new_secret()),
        })?;
        let request = Request::write(Method::POST, ["v1", "acl", "tokens"]).json(body);
        self.call(&request).await?.success()?.json()
    }

    /// Every token: names, roles, creation times (never secrets).
    pub async fn tokens(&self) -> Result<Vec<TokenInfo>> {
        let request = Request::new(Method::GET, ["v1", "acl", "tokens"]);
        let list: TokenList = self.call(&request).await?.success()?.json()?;
        Ok(list.tokens)
    }

    /// Revokes the token named `name`: each node refuses it once it has
    /// applied the change.
    pub async fn revoke_token(&self, name: &str) -> Result<()> {
        let request = Request::write(Method::DELETE, ["v1", "acl", "tokens", acl_name(name)?]);
        self.call(&request).await?.success()?;
        Ok(())
    }
}

/// `name`, checked as the server checks a role's or token's: an empty one
/// would name another route, which answers 404 "no such route".
fn acl_name(name: &str) -> Result<&str> {
    schemas::api::check_acl_name(name).map_err(|message| crate::Error::Invalid {
        what: "name",
        message,
    })?;
    Ok(name)
}

/// A token's secret: 256 random bits in hex, as the server makes them.
fn new_secret() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
