//! The flags of `weft pub` and `weft sub` (clap), shaped after
//! `mosquitto_pub` / `mosquitto_sub` and `nats pub` / `nats sub`.
//!
//! Owns: the flag names, their defaults and their help text (what `weft
//! pub --help` prints). Must not touch: checking that flags fit together
//! (`check.rs`), connecting (the protocol files).

use std::path::PathBuf;

use clap::{ArgGroup, Args, ValueEnum};

use super::target::DEFAULT_URL;

/// How to reach the broker, shared by `pub` and `sub`.
#[derive(Args, Debug, Clone)]
pub struct ConnectArgs {
    /// mqtt://HOST[:PORT] (1883), mqtts:// (MQTT over TLS, 8883), nats:// (4222),
    /// tls:// (NATS over TLS, 4222); a bare HOST[:PORT] is MQTT. For NATS the
    /// topic is a subject.
    #[arg(long, visible_alias = "server", value_name = "URL", default_value = DEFAULT_URL)]
    pub url: String,
    /// The port, in place of the URL's (as mosquitto's -p).
    #[arg(short = 'p', long, value_name = "PORT")]
    pub port: Option<u16>,
    /// MQTT protocol version: 5 (default) or 3.1.1 (also: mqttv5, mqttv311, 311).
    #[arg(short = 'V', long = "protocol-version", value_name = "VERSION",
          default_value = "5", value_parser = parse_version)]
    pub protocol_version: MqttVersion,
    /// MQTT client id (default: weft-pub-PID / weft-sub-PID); NATS: the connection name.
    #[arg(short = 'i', long = "id", value_name = "ID")]
    pub client_id: Option<String>,
    /// MQTT keep-alive in seconds.
    #[arg(
        short = 'k',
        long = "keepalive",
        value_name = "SECONDS",
        default_value_t = 60
    )]
    pub keep_alive_s: u16,
    /// User name (MQTT user name, NATS user).
    #[arg(short = 'u', long, value_name = "NAME")]
    pub user: Option<String>,
    /// Password (MQTT password, NATS pass).
    #[arg(short = 'P', long, value_name = "PASSWORD")]
    pub password: Option<String>,
    /// A bearer token (NATS auth_token; MQTT: sent as the password, with -u's name or none).
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// NATS credentials file (a JWT and its nkey seed, as `nsc` writes).
    #[arg(long, value_name = "FILE")]
    pub creds: Option<PathBuf>,
    /// NATS nkey seed file (`SU…`): the client signs the server's nonce with it.
    #[arg(long, value_name = "FILE")]
    pub nkey: Option<PathBuf>,
    /// PEM file of the CA(s) that sign the server's certificate (default: the system's).
    #[arg(long, value_name = "FILE")]
    pub cafile: Option<PathBuf>,
    /// PEM client certificate (with --key) for servers that ask for one.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// PEM private key of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Accept any server certificate, unchecked (tests only: anyone on the path can read
    /// and forge the traffic).
    #[arg(long)]
    pub insecure: bool,
    /// Longest wait for the connection (TCP, TLS and the broker's answer), in seconds.
    #[arg(long = "connect-timeout", value_name = "SECONDS", default_value_t = 5)]
    pub connect_timeout_s: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MqttVersion {
    V311,
    V5,
}

fn parse_version(s: &str) -> Result<MqttVersion, String> {
    match s.to_ascii_lowercase().as_str() {
        "5" | "5.0" | "mqttv5" => Ok(MqttVersion::V5),
        "3.1.1" | "311" | "mqttv311" | "4" => Ok(MqttVersion::V311),
        _ => Err("expected 5 or 3.1.1".into()),
    }
}

/// `weft pub`: publish one message (or N, or one per stdin line).
#[derive(Args, Debug, Clone)]
#[command(group(ArgGroup::new("payload").required(true)
    .args(["message", "file", "stdin_line", "stdin_file", "null_message"])))]
pub struct PubArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Topic (MQTT form: a/b/c) or, for a NATS URL, subject (a.b.c).
    #[arg(short = 't', long, value_name = "TOPIC")]
    pub topic: String,
    /// MQTT QoS: 0, 1 (PUBACK awaited) or 2 (PUBCOMP awaited). NATS: 0 only.
    #[arg(short = 'q', long, value_name = "QOS", default_value_t = 0,
          value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Publish as the topic's retained message (MQTT).
    #[arg(short = 'r', long)]
    pub retain: bool,
    /// The payload.
    #[arg(short = 'm', long, value_name = "MESSAGE")]
    pub message: Option<String>,
    /// The payload: a whole file.
    #[arg(short = 'f', long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// One message per line of stdin (the line without its end), until stdin ends.
    #[arg(short = 'l', long = "stdin-line")]
    pub stdin_line: bool,
    /// The payload: all of stdin.
    #[arg(short = 's', long = "stdin-file")]
    pub stdin_file: bool,
    /// An empty payload (with -r: clears the topic's retained message).
    #[arg(short = 'n', long = "null-message")]
    pub null_message: bool,
    /// Publish the payload N times (not with -l).
    #[arg(short = 'c', long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub count: u64,
    /// Pause between two messages, in milliseconds.
    #[arg(
        long,
        visible_alias = "interval-ms",
        value_name = "MS",
        default_value_t = 0
    )]
    pub interval: u64,
    /// MQTT 5 user property KEY=VALUE (repeatable; NATS: a header).
    #[arg(short = 'D', long = "property", value_name = "KEY=VALUE")]
    pub properties: Vec<String>,
    /// NATS header KEY:VALUE (repeatable; MQTT 5: a user property).
    #[arg(short = 'H', long = "header", value_name = "KEY:VALUE")]
    pub headers: Vec<String>,
    /// MQTT 5 content type of the payload.
    #[arg(long = "content-type", value_name = "TYPE")]
    pub content_type: Option<String>,
    /// Longest wait for the broker's acknowledgements (QoS 1/2, NATS flush)
    /// after the last message, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub timeout: u64,
}

/// How `weft sub` prints a message on stdout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// The payload as it came, then a newline.
    Raw,
    /// The topic, a space, the payload (as mosquitto_sub -v).
    Topic,
    /// One JSON object a line: topic, payload (UTF-8) or payload_base64, qos,
    /// retain, properties (MQTT 5) or headers (NATS).
    Json,
}

/// `weft sub`: print what arrives on topic filters.
#[derive(Args, Debug, Clone)]
pub struct SubArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Topic filter (MQTT form, + and #) or, for a NATS URL, subject (* and >). Repeatable.
    #[arg(short = 't', long, value_name = "FILTER", required = true)]
    pub topic: Vec<String>,
    /// MQTT subscription QoS: 0, 1 or 2.
    #[arg(short = 'q', long, value_name = "QOS", default_value_t = 0,
          value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Exit (status 0) after N messages.
    #[arg(short = 'c', long, short_alias = 'C', value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Exit after this many seconds subscribed: status 0 if a message arrived
    /// (and --count was reached, when given), else 1.
    #[arg(short = 'W', long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Output: raw (the payload), topic (topic and payload) or json.
    #[arg(long, value_enum, default_value_t = Format::Raw)]
    pub format: Format,
    /// Same as --format topic (mosquitto_sub -v).
    #[arg(short = 'v', long, conflicts_with = "format")]
    pub verbose: bool,
    /// Share the subscription in a group: one member gets each message (NATS queue
    /// group; MQTT: $share/GROUP/FILTER).
    #[arg(long, value_name = "GROUP")]
    pub queue: Option<String>,
    /// Do not print the "subscribed" line on stderr.
    #[arg(long)]
    pub quiet: bool,
}
