//! Tests of the AMQP message mapping: literal encodings from the spec's
//! type tables, round trips through `serde_amqp`, refusals.

use super::*;
