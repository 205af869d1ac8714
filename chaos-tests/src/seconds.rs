//! Durations written as seconds: as a JSON number such as `2.5` in histories and reports, so a
//! person reading the JSON sees `"at": 12.5` rather than serde's `{ "secs": 12, "nanos": … }`,
//! and as text (`12.50 s`) in violation details and Markdown.

use std::time::Duration;

use serde::Deserialize;
use serde::Deserializer;
use serde::Serializer;

/// `12.50 s`: hundredths are enough for deadlines of seconds and poll intervals of 100 ms.
pub fn text(duration: Duration) -> String {
    format!("{:.2} s", duration.as_secs_f64())
}

pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64())
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let seconds = f64::deserialize(deserializer)?;
    Duration::try_from_secs_f64(seconds).map_err(serde::de::Error::custom)
}

/// The same for `Option<Duration>`: `null` when absent.
pub mod optional {
    use std::time::Duration;

    use serde::Deserialize;
    use serde::Deserializer;
    use serde::Serializer;

    pub fn serialize<S: Serializer>(duration: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
        match duration {
            Some(duration) => serializer.serialize_some(&duration.as_secs_f64()),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
        Option::<f64>::deserialize(deserializer)?
            .map(|seconds| Duration::try_from_secs_f64(seconds).map_err(serde::de::Error::custom))
            .transpose()
    }
}
