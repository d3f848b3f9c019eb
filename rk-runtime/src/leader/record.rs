//! [`LeaderElectionRecord`]: what a lock holds, in client-go's JSON shape.

use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// The annotation ConfigMap and Endpoints locks keep the record in.
pub const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";

/// Who holds a lock and until when, as client-go's `LeaderElectionRecord`:
/// serialised to the same JSON (`holderIdentity`, `leaseDurationSeconds`,
/// `acquireTime`, `renewTime`, `leaderTransitions`), so rk and client-go
/// components can contend for one lock.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaderElectionRecord {
    /// The holder's identity; empty when released.
    #[serde(default)]
    pub holder_identity: String,
    /// How long the holder's claim lasts after each renewal, in seconds.
    #[serde(default)]
    pub lease_duration_seconds: i32,
    /// When the current holder acquired the lock.
    #[serde(default, with = "seconds_time")]
    pub acquire_time: Option<Timestamp>,
    /// When the holder last renewed.
    #[serde(default, with = "seconds_time")]
    pub renew_time: Option<Timestamp>,
    /// How many times the lock changed hands.
    #[serde(default)]
    pub leader_transitions: i32,
}

/// `metav1.Time` as JSON: RFC 3339 in whole seconds, `null` when unset.
mod seconds_time {
    use k8s_openapi::jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Timestamp>, D::Error> {
        let raw: Option<String> = Option::deserialize(d)?;
        match raw.filter(|s| !s.is_empty()) {
            Some(s) => s.parse().map(Some).map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_uses_client_go_json_shape() {
        let json = r#"{"holderIdentity":"a","leaseDurationSeconds":15,"acquireTime":"2024-01-02T03:04:05Z","renewTime":"2024-01-02T03:04:06Z","leaderTransitions":2}"#;
        let record: LeaderElectionRecord = serde_json::from_str(json).unwrap();
        assert_eq!(record.holder_identity, "a");
        assert_eq!(record.leader_transitions, 2);
        assert_eq!(serde_json::to_string(&record).unwrap(), json);
    }
}
