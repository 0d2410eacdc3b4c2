//! Serde helpers for Go's JSON conventions: `null` for empty slices and
//! maps, `time.Duration` as integer nanoseconds, and `omitempty`.

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// Go writes a nil slice or map as `null`: read it as the empty value.
pub(crate) fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Go's `omitempty` for numbers and booleans: skip the zero value.
pub(crate) fn is_zero<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// Go's `time.Duration`: signed integer nanoseconds.
pub(crate) mod duration_ns {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        value: &Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_i64(i64::try_from(value.as_nanos()).unwrap_or(i64::MAX))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Duration, D::Error> {
        let nanos = Option::<i64>::deserialize(deserializer)?.unwrap_or(0);
        let nanos = u64::try_from(nanos)
            .map_err(|_| serde::de::Error::custom(format!("negative duration: {nanos} ns")))?;
        Ok(Duration::from_nanos(nanos))
    }
}

/// An optional `time.Duration` where Go's zero value means "not set".
pub(crate) mod optional_duration_ns {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        value: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        duration_ns::serialize(&value.unwrap_or_default(), serializer)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        let value = duration_ns::deserialize(deserializer)?;
        Ok((!value.is_zero()).then_some(value))
    }
}

/// Go's `net.IP` as text, where `""` and `null` mean no address.
pub(crate) mod optional_ip {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        value: &Option<IpAddr>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(ip) => serializer.collect_str(ip),
            None => serializer.serialize_str(""),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<IpAddr>, D::Error> {
        match Option::<String>::deserialize(deserializer)?.as_deref() {
            None | Some("") => Ok(None),
            Some(text) => text
                .parse()
                .map(Some)
                .map_err(|_| serde::de::Error::custom(format!("invalid IP address: {text:?}"))),
        }
    }
}
