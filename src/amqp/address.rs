//! STAND-IN (h36) for h38's `amqp::address`, with the contract's
//! signatures, so that the session machine builds and is tested before
//! h38's branch is merged; h38's file replaces this one at merge.
//! Minimal rules only: a leading `/topic/` is stripped, the rest is taken
//! in the MQTT form; no NATS dialect, no `$share`.

use std::borrow::Cow;

use crate::topic::{self, TopicLimits};

pub enum Target {
    /// The internal (MQTT-form) topic.
    Topic(String),
    /// The null address: each message's `to` names its topic.
    Anonymous,
}

pub struct Source {
    pub filter: String,
    pub queue: Option<Box<str>>,
}

#[derive(Debug)]
pub enum AddressError {
    Empty,
    Invalid(String),
}

fn strip(address: &str) -> &str {
    address.strip_prefix("/topic/").unwrap_or(address)
}

pub fn target(address: Option<&str>, limits: &TopicLimits) -> Result<Target, AddressError> {
    match address {
        None => Ok(Target::Anonymous),
        Some(a) => topic(a, limits).map(Target::Topic),
    }
}

pub fn source(address: &str, limits: &TopicLimits) -> Result<Source, AddressError> {
    let filter = strip(address);
    if filter.is_empty() {
        return Err(AddressError::Empty);
    }
    topic::validate_client_filter(filter, limits)
        .map_err(|e| AddressError::Invalid(format!("{e:?}")))?;
    Ok(Source {
        filter: filter.to_owned(),
        queue: None,
    })
}

pub fn topic(address: &str, limits: &TopicLimits) -> Result<String, AddressError> {
    let name = strip(address);
    if name.is_empty() {
        return Err(AddressError::Empty);
    }
    topic::validate_name(name, limits).map_err(|e| AddressError::Invalid(format!("{e:?}")))?;
    Ok(name.to_owned())
}

pub fn render(topic: &str) -> Cow<'_, str> {
    Cow::Borrowed(topic)
}
