//! RocketMQ metadata, typed: topic configs (`/v1/topics`) and subscription
//! groups (`/v1/subscriptions`), as the `schemas` crate defines them.

use futures::stream::BoxStream;
use reqwest::{Method, StatusCode};
use schemas::api::{LeaseId, MetadataKind, WriteResult};
use schemas::{SubscriptionGroupConfig, TopicConfig, ValidateOptions};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::kv::{paged, to_json, Condition, LIST_PAGE_SIZE};
use crate::request::Request;
use crate::Revision;

/// A config and the revision of its last write.
///
/// ```no_run
/// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
/// if let Some(topic) = client.get_topic("orders").await? {
///     println!("{} queues, revision {}", topic.value.write_queue_nums, topic.mod_revision);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versioned<T> {
    /// The config as stored: RocketMQ's defaults filled in, unknown fields kept.
    pub value: T,
    /// Revision of its last write; [`Condition::ModRevision`] compares with it.
    pub mod_revision: Revision,
}

/// How a topic or group is written: its condition, its idempotency key,
/// and whether RocketMQ's reserved system names are allowed.
///
/// ```
/// use kv_client::{Condition, MetadataOptions};
///
/// // Import of a broker's own files: system topics such as TBW102 included.
/// let options = MetadataOptions::new().allow_system(true).condition(Condition::Absent);
/// # let _ = options;
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetadataOptions {
    /// When the write applies.
    pub condition: Condition,
    /// The write's idempotency key; a fresh one per call when `None`.
    pub idempotency_key: Option<Uuid>,
    /// Accept reserved system names (`TBW102`, `TOOLS_CONSUMER`, …).
    pub allow_system: bool,
    /// The lease the config is attached to (`?lease=`): it is deleted when
    /// the lease ends. `None` detaches it from any lease.
    pub lease: Option<LeaseId>,
}

impl MetadataOptions {
    /// No condition, a fresh idempotency key, system names refused.
    ///
    /// ```
    /// assert!(!kv_client::MetadataOptions::new().allow_system);
    /// ```
    pub fn new() -> MetadataOptions {
        MetadataOptions::default()
    }

    /// Sets the condition.
    ///
    /// ```
    /// let options = kv_client::MetadataOptions::new().condition(kv_client::Condition::Absent);
    /// assert_eq!(options.condition, kv_client::Condition::Absent);
    /// ```
    pub fn condition(mut self, condition: Condition) -> MetadataOptions {
        self.condition = condition;
        self
    }

    /// Sets the idempotency key.
    ///
    /// ```
    /// let key = uuid::Uuid::new_v4();
    /// assert_eq!(kv_client::MetadataOptions::new().idempotency_key(key).idempotency_key, Some(key));
    /// ```
    pub fn idempotency_key(mut self, key: Uuid) -> MetadataOptions {
        self.idempotency_key = Some(key);
        self
    }

    /// Allows or refuses reserved system names.
    ///
    /// ```
    /// assert!(kv_client::MetadataOptions::new().allow_system(true).allow_system);
    /// ```
    pub fn allow_system(mut self, allowed: bool) -> MetadataOptions {
        self.allow_system = allowed;
        self
    }

    /// Attaches the config to a lease: it is deleted when the lease ends.
    ///
    /// ```
    /// assert_eq!(kv_client::MetadataOptions::new().lease(42).lease, Some(42));
    /// ```
    pub fn lease(mut self, lease: LeaseId) -> MetadataOptions {
        self.lease = Some(lease);
        self
    }
}

/// `name`, checked as the server checks a name of kind `T` (system names
/// allowed: the server decides those): an empty one would name another
/// route, which answers 404 "no such route".
fn named<T: MetadataKind>(name: &str) -> Result<&str> {
    T::validate_name(name, ValidateOptions::ALLOW_SYSTEM).map_err(|error| Error::Invalid {
        what: T::KIND,
        message: error.to_string(),
    })?;
    Ok(name)
}

impl Client {
    /// Reads a config of either kind; `None` when there is none of that name.
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// let topic = client.get_config::<schemas::TopicConfig>("orders").await?;
    /// # let _ = topic;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn get_config<T: MetadataKind>(&self, name: &str) -> Result<Option<Versioned<T>>> {
        let request = Request::new(Method::GET, ["v1", T::COLLECTION, named::<T>(name)?]);
        let answer = self.call(&request).await?;
        if answer.status == StatusCode::NOT_FOUND && answer.has_code(T::NOT_FOUND) {
            return Ok(None);
        }
        let answer = answer.success()?;
        Ok(Some(Versioned {
            value: answer.json()?,
            mod_revision: answer.etag()?,
        }))
    }

    /// Writes a config of either kind, with a condition, an idempotency
    /// key, or system names allowed.
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// let group = schemas::SubscriptionGroupConfig::new("billing");
    /// client.put_config(&group, kv_client::MetadataOptions::new()).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn put_config<T: MetadataKind>(
        &self,
        config: &T,
        options: MetadataOptions,
    ) -> Result<WriteResult> {
        let name = named::<T>(config.name())?;
        let mut request =
            Request::write(Method::PUT, ["v1", T::COLLECTION, name]).json(to_json(config)?);
        if options.allow_system {
            request = request.query("system", "true");
        }
        if let Some(lease) = options.lease {
            request = request.query("lease", lease);
        }
        if let Some((name, value)) = options.condition.header() {
            request = request.header(name, value);
        }
        if let Some(key) = options.idempotency_key {
            request.idempotency_key = Some(key);
        }
        self.call(&request).await?.success()?.json()
    }

    async fn delete_config<T: MetadataKind>(
        &self,
        name: &str,
        allow_system: bool,
    ) -> Result<Option<WriteResult>> {
        let mut request = Request::write(Method::DELETE, ["v1", T::COLLECTION, named::<T>(name)?]);
        if allow_system {
            request = request.query("system", "true");
        }
        let answer = self.call(&request).await?;
        if answer.status == StatusCode::NOT_FOUND && answer.has_code(T::NOT_FOUND) {
            return Ok(None);
        }
        answer.success()?.json().map(Some)
    }

    fn list_configs<T: MetadataKind>(&self) -> BoxStream<'static, Result<T>> {
        let client = self.clone();
        paged(move |start_after| {
            let client = client.clone();
            async move {
                let mut request =
                    Request::new(Method::GET, ["v1", T::COLLECTION]).query("limit", LIST_PAGE_SIZE);
                if let Some(start_after) = start_after {
                    request = request.query("start_after", start_after);
                }
                let answer = client.call(&request).await?.success()?;
                let (configs, more) = T::list_items(answer.json()?);
                let last = configs.last().map(|config| config.name().to_string());
                Ok((configs, last.filter(|_| more)))
            }
        })
    }

    /// Reads a topic's config; `None` when there is no such topic.
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// let orders = client.get_topic("orders").await?.expect("created before");
    /// assert_eq!(orders.value.topic_name, "orders");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn get_topic(&self, name: &str) -> Result<Option<Versioned<TopicConfig>>> {
        self.get_config(name).await
    }

    /// Writes a topic's config, creating or replacing it. The server
    /// validates it; reserved system names are refused.
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// let mut orders = schemas::TopicConfig::new("orders");
    /// orders.write_queue_nums = 8;
    /// orders.read_queue_nums = 8;
    /// client.put_topic(&orders).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn put_topic(&self, config: &TopicConfig) -> Result<WriteResult> {
        self.put_config(config, MetadataOptions::new()).await
    }

    /// Creates a topic; fails with
    /// [`is_precondition_failed`](crate::Error::is_precondition_failed) if it exists.
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// client.create_topic(&schemas::TopicConfig::new("payments")).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn create_topic(&self, config: &TopicConfig) -> Result<WriteResult> {
        let options = MetadataOptions::new().condition(Condition::Absent);
        self.put_config(config, options).await
    }

    /// Writes a topic's config with a condition, an idempotency key, or
    /// system names allowed.
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// use kv_client::{Condition, MetadataOptions};
    ///
    /// let current = client.get_topic("orders").await?.expect("exists");
    /// let mut changed = current.value.clone();
    /// changed.perm = 4; // read only
    /// let options = MetadataOptions::new().condition(Condition::ModRevision(current.mod_revision));
    /// client.put_topic_with(&changed, options).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn put_topic_with(
        &self,
        config: &TopicConfig,
        options: MetadataOptions,
    ) -> Result<WriteResult> {
        self.put_config(config, options).await
    }

    /// Deletes a topic; `None` when there was no such topic.
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// client.delete_topic("orders").await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn delete_topic(&self, name: &str) -> Result<Option<WriteResult>> {
        self.delete_config::<TopicConfig>(name, false).await
    }

    /// Deletes a topic, a reserved system one (`TBW102`, …) if
    /// `allow_system`; [`Client::delete_topic`] refuses those, as RocketMQ
    /// does.
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// client.delete_topic_with("SCHEDULE_TOPIC_XXXX", true).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn delete_topic_with(
        &self,
        name: &str,
        allow_system: bool,
    ) -> Result<Option<WriteResult>> {
        self.delete_config::<TopicConfig>(name, allow_system).await
    }

    /// Every topic, by name, as a stream over pages.
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// use futures::TryStreamExt;
    ///
    /// let topics: Vec<schemas::TopicConfig> = client.list_topics().try_collect().await?;
    /// for topic in &topics {
    ///     println!("{} r{} w{}", topic.topic_name, topic.read_queue_nums, topic.write_queue_nums);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn list_topics(&self) -> BoxStream<'static, Result<TopicConfig>> {
        self.list_configs()
    }

    /// Reads a consumer group's config; `None` when there is no such group.
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// let group = client.get_subscription("order-consumers").await?;
    /// println!("{:?}", group.map(|group| group.value.retry_max_times));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn get_subscription(
        &self,
        name: &str,
    ) -> Result<Option<Versioned<SubscriptionGroupConfig>>> {
        self.get_config(name).await
    }

    /// Writes a consumer group's config, creating or replacing it.
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// let mut group = schemas::SubscriptionGroupConfig::new("order-consumers");
    /// group.retry_max_times = 3;
    /// client.put_subscription(&group).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn put_subscription(&self, config: &SubscriptionGroupConfig) -> Result<WriteResult> {
        self.put_config(config, MetadataOptions::new()).await
    }

    /// Creates a consumer group; fails with
    /// [`is_precondition_failed`](crate::Error::is_precondition_failed) if it exists.
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// let group = schemas::SubscriptionGroupConfig::new("billing");
    /// client.create_subscription(&group).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn create_subscription(
        &self,
        config: &SubscriptionGroupConfig,
    ) -> Result<WriteResult> {
        let options = MetadataOptions::new().condition(Condition::Absent);
        self.put_config(config, options).await
    }

    /// Writes a consumer group's config with a condition, an idempotency
    /// key, or system names allowed.
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// let group = schemas::SubscriptionGroupConfig::new("TOOLS_CONSUMER");
    /// let options = kv_client::MetadataOptions::new().allow_system(true);
    /// client.put_subscription_with(&group, options).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn put_subscription_with(
        &self,
        config: &SubscriptionGroupConfig,
        options: MetadataOptions,
    ) -> Result<WriteResult> {
        self.put_config(config, options).await
    }

    /// Deletes a consumer group; `None` when there was no such group.
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// client.delete_subscription("billing").await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn delete_subscription(&self, name: &str) -> Result<Option<WriteResult>> {
        self.delete_config::<SubscriptionGroupConfig>(name, false)
            .await
    }

    /// Deletes a consumer group, a reserved system one (`TOOLS_CONSUMER`,
    /// …) if `allow_system`; [`Client::delete_subscription`] refuses those.
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// client.delete_subscription_with("TOOLS_CONSUMER", true).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn delete_subscription_with(
        &self,
        name: &str,
        allow_system: bool,
    ) -> Result<Option<WriteResult>> {
        self.delete_config::<SubscriptionGroupConfig>(name, allow_system)
            .await
    }

    /// Every consumer group, by name, as a stream over pages.
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// use futures::TryStreamExt;
    ///
    /// let groups: Vec<_> = client.list_subscriptions().try_collect().await?;
    /// println!("{} groups", groups.len());
    /// # Ok(())
    /// # }
    /// ```
    pub fn list_subscriptions(&self) -> BoxStream<'static, Result<SubscriptionGroupConfig>> {
        self.list_configs()
    }
}
