//! Service account tokens: the `serviceaccounts/token` subresource
//! (`TokenRequest`, what `kubectl create token` and projected token volumes
//! ask for) and their review (`TokenReview`).
//!
//! Tokens are JWTs with upstream's claims (`iss`, `sub`, `aud`, `exp`,
//! `iat`, `nbf`, `jti` and the `kubernetes.io` claim naming the namespace,
//! the service account and the object the token is bound to), signed with
//! HMAC-SHA256 under a key the API server keeps in its store, so tokens
//! stay valid across restarts. A review accepts a token only while it has
//! not expired, one of its audiences is asked for, and the service account
//! (and the pod or secret it is bound to) still exists with the same uid.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::error::{ApiError, StatusCause};
use crate::registry::store::{self, Target};
use crate::state::ApiState;
use crate::storage::StorageError;

/// The issuer, and the audience a token gets when none is asked for.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// Where the signing key is kept (outside every resource's prefix).
const KEY_PATH: &str = "/registry/rk.dev/serviceaccount-token-key";

/// Token lifetimes upstream accepts: ten minutes to 2^32 seconds.
const MIN_EXPIRATION: i64 = 600;
const MAX_EXPIRATION: i64 = 1 << 32;
const DEFAULT_EXPIRATION: i64 = 3600;

type HmacSha256 = Hmac<Sha256>;

/// The signing key: read from the store, or made and stored on first use.
async fn key(state: &ApiState) -> Result<&[u8], ApiError> {
    state
        .token_key
        .get_or_try_init(|| async {
            let storage_err = |e: StorageError| ApiError::internal(e.to_string());
            if let Some(kv) = state.storage.get(KEY_PATH).await.map_err(storage_err)? {
                return Ok(kv.value.to_vec());
            }
            let fresh: Vec<u8> = (0..2)
                .flat_map(|_| *uuid::Uuid::new_v4().as_bytes())
                .collect();
            match state.storage.create(KEY_PATH, fresh.clone().into()).await {
                Ok(_) => Ok(fresh),
                // Another request stored one first: use that.
                Err(StorageError::KeyExists { .. }) => state
                    .storage
                    .get(KEY_PATH)
                    .await
                    .map_err(storage_err)?
                    .map(|kv| kv.value.to_vec())
                    .ok_or_else(|| ApiError::internal("the token signing key went missing")),
                Err(e) => Err(storage_err(e)),
            }
        })
        .await
        .map(Vec::as_slice)
}

fn sign(key: &[u8], message: &[u8]) -> Result<Vec<u8>, ApiError> {
    let mut mac = HmacSha256::new_from_slice(key).map_err(|e| ApiError::internal(e.to_string()))?;
    mac.update(message);
    Ok(mac.finalize().into_bytes().to_vec())
}

fn invalid(field: &str, message: String) -> ApiError {
    ApiError::invalid(
        "TokenRequest",
        "authentication.k8s.io",
        "",
        vec![StatusCause {
            reason: "FieldValueInvalid".into(),
            message,
            field: field.into(),
        }],
    )
}

/// An object by kind and name in `namespace`, if the kind is one a token
/// may be bound to.
async fn bound_object(
    state: &ApiState,
    namespace: &str,
    kind: &str,
    name: &str,
) -> Result<Value, ApiError> {
    let plural = match kind {
        "Pod" => "pods",
        "Secret" => "secrets",
        other => {
            return Err(invalid(
                "spec.boundObjectRef.kind",
                format!("Unsupported value: {other:?}: supported values: \"Pod\", \"Secret\""),
            ));
        }
    };
    let info = state
        .resource("", "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("{plural} are not served")))?;
    let target = Target {
        info,
        namespace: Some(namespace.to_string()),
        name: name.to_string(),
    };
    Ok(store::get(state, &target).await?.0)
}

fn uid_of(obj: &Value) -> &str {
    obj["metadata"]["uid"].as_str().unwrap_or_default()
}

/// `POST .../serviceaccounts/{name}/token`: a signed token for the service
/// account `target`, as a `TokenRequest` with its status filled in.
pub async fn request(state: &ApiState, target: &Target, body: Value) -> Result<Value, ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    if let Some(kind) = body.get("kind").and_then(Value::as_str)
        && kind != "TokenRequest"
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind (TokenRequest)"
        )));
    }
    let namespace = target.namespace.clone().unwrap_or_default();
    let sa = store::get(state, target).await?.0;
    let spec = &body["spec"];
    let expiration = match spec.get("expirationSeconds") {
        None | Some(Value::Null) => DEFAULT_EXPIRATION,
        Some(v) => v
            .as_i64()
            .ok_or_else(|| ApiError::bad_request("spec.expirationSeconds must be an integer"))?,
    };
    if expiration < MIN_EXPIRATION {
        return Err(invalid(
            "spec.expirationSeconds",
            format!("Invalid value: {expiration}: may not specify a duration less than 10 minutes"),
        ));
    }
    if expiration > MAX_EXPIRATION {
        return Err(invalid(
            "spec.expirationSeconds",
            format!(
                "Invalid value: {expiration}: may not specify a duration larger than 2^32 seconds"
            ),
        ));
    }
    let audiences: Vec<String> = match spec.get("audiences").and_then(Value::as_array) {
        Some(list) if !list.is_empty() => list
            .iter()
            .map(|a| a.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| ApiError::bad_request("spec.audiences must be a list of strings"))?,
        _ => vec![ISSUER.to_string()],
    };
    let mut claims_k8s = json!({
        "namespace": namespace,
        "serviceaccount": {"name": target.name, "uid": uid_of(&sa)},
    });
    let bound = spec.get("boundObjectRef").filter(|b| b.is_object());
    if let Some(bound) = bound {
        let kind = bound["kind"].as_str().unwrap_or_default();
        let name = bound["name"].as_str().unwrap_or_default();
        let obj = bound_object(state, &namespace, kind, name).await?;
        if let Some(want) = bound["uid"].as_str().filter(|u| !u.is_empty())
            && want != uid_of(&obj)
        {
            return Err(ApiError::conflict_msg(
                "",
                &format!("{}s", kind.to_ascii_lowercase()),
                name,
                &format!(
                    "the UID in the bound object reference ({want}) does not match the UID in record. The object might have been deleted and then recreated"
                ),
            ));
        }
        claims_k8s[kind.to_ascii_lowercase()] = json!({"name": name, "uid": uid_of(&obj)});
    }
    let now = jiff::Timestamp::now();
    let iat = now.as_second();
    let exp = iat + expiration;
    let jti = uuid::Uuid::new_v4().to_string();
    let claims = json!({
        "aud": audiences,
        "exp": exp,
        "iat": iat,
        "iss": ISSUER,
        "jti": jti,
        "kubernetes.io": claims_k8s,
        "nbf": iat,
        "sub": format!("system:serviceaccount:{namespace}:{}", target.name),
    });
    let header = json!({"alg": "HS256", "kid": "rk", "typ": "JWT"});
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = sign(key(state).await?, signing_input.as_bytes())?;
    let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature));
    let expires = jiff::Timestamp::from_second(exp)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    let mut out_spec = json!({"audiences": audiences, "expirationSeconds": expiration});
    if let Some(b) = bound {
        out_spec["boundObjectRef"] = b.clone();
    }
    Ok(json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "metadata": {"name": target.name, "namespace": namespace,
            "creationTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()},
        "spec": out_spec,
        "status": {"token": token, "expirationTimestamp": expires},
    }))
}

/// The verified claims of `token`, or why it is not accepted.
async fn verify(state: &ApiState, token: &str) -> Result<Value, String> {
    let invalid = || "invalid bearer token".to_string();
    let (signing_input, signature) = token.rsplit_once('.').ok_or_else(invalid)?;
    let (_, payload) = signing_input.split_once('.').ok_or_else(invalid)?;
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| invalid())?;
    let key = key(state).await.map_err(|e| e.message)?;
    let mut mac = HmacSha256::new_from_slice(key).map_err(|e| e.to_string())?;
    mac.update(signing_input.as_bytes());
    mac.verify_slice(&signature).map_err(|_| invalid())?;
    let claims: Value = URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(invalid)?;
    let now = jiff::Timestamp::now().as_second();
    if claims["exp"].as_i64().is_none_or(|exp| exp <= now) {
        return Err("service account token has expired".into());
    }
    if claims["nbf"].as_i64().is_some_and(|nbf| nbf > now + 60) {
        return Err("service account token is not valid yet".into());
    }
    Ok(claims)
}

/// Whether the service account (and the object the token is bound to) the
/// claims name still exist with the uids the token was issued for.
async fn still_valid(state: &ApiState, claims: &Value) -> Result<(), String> {
    let k8s = &claims["kubernetes.io"];
    let namespace = k8s["namespace"].as_str().unwrap_or_default();
    let check = |kind: &'static str, plural: &'static str| {
        let name = k8s[kind]["name"].as_str().unwrap_or_default().to_string();
        let uid = k8s[kind]["uid"].as_str().unwrap_or_default().to_string();
        (plural, name, uid)
    };
    let mut wanted = vec![check("serviceaccount", "serviceaccounts")];
    for (kind, plural) in [("pod", "pods"), ("secret", "secrets")] {
        if k8s.get(kind).is_some() {
            wanted.push(check(kind, plural));
        }
    }
    for (plural, name, uid) in wanted {
        let info = state
            .resource("", "v1", plural)
            .ok_or_else(|| format!("{plural} are not served"))?;
        let target = Target {
            info,
            namespace: Some(namespace.to_string()),
            name: name.clone(),
        };
        let current = match store::get(state, &target).await {
            Ok((obj, _)) => obj,
            Err(_) => return Err(format!("{plural} \"{name}\" not found")),
        };
        if uid_of(&current) != uid {
            return Err(format!(
                "the {plural} \"{name}\" the token was issued for no longer exists (uid mismatch)"
            ));
        }
    }
    Ok(())
}

/// The strings of a JSON list (nothing for anything else).
fn strings(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// `POST /apis/authentication.k8s.io/v1/tokenreviews`: the review with its
/// status filled in.
pub async fn review(state: &ApiState, mut body: Value) -> Result<Value, ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    let token = body["spec"]["token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let asked = strings(&body["spec"]["audiences"]);
    let accepted = if asked.is_empty() {
        vec![ISSUER.to_string()]
    } else {
        asked
    };
    let outcome = async {
        if token.is_empty() {
            return Err("token is required".to_string());
        }
        let claims = verify(state, &token).await?;
        let audiences = strings(&claims["aud"]);
        let matched: Vec<String> = accepted
            .iter()
            .filter(|a| audiences.contains(a))
            .cloned()
            .collect();
        if matched.is_empty() {
            return Err("token audiences are invalid".to_string());
        }
        still_valid(state, &claims).await?;
        Ok((claims, matched))
    }
    .await;
    body["apiVersion"] = json!("authentication.k8s.io/v1");
    body["kind"] = json!("TokenReview");
    body["status"] = match outcome {
        Ok((claims, audiences)) => {
            let k8s = &claims["kubernetes.io"];
            let namespace = k8s["namespace"].as_str().unwrap_or_default();
            let mut extra = json!({
                "authentication.kubernetes.io/credential-id":
                    [format!("JTI={}", claims["jti"].as_str().unwrap_or_default())],
            });
            for kind in ["pod", "secret"] {
                if let Some(obj) = k8s.get(kind) {
                    extra[format!("authentication.kubernetes.io/{kind}-name")] =
                        json!([obj["name"]]);
                    extra[format!("authentication.kubernetes.io/{kind}-uid")] = json!([obj["uid"]]);
                }
            }
            json!({
                "authenticated": true,
                "audiences": audiences,
                "user": {
                    "username": claims["sub"],
                    "uid": k8s["serviceaccount"]["uid"],
                    "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{namespace}"), "system:authenticated"],
                    "extra": extra,
                },
            })
        }
        Err(error) => json!({"user": {}, "error": error}),
    };
    Ok(body)
}
