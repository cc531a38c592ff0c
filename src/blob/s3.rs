//! The S3 client of an `s3://bucket/prefix` blob URL.
//!
//! Settings come from the standard AWS environment variables (every `AWS_*` variable that
//! object_store knows, as `AmazonS3Builder::from_env` reads them: `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_DEFAULT_REGION`,
//! `AWS_ENDPOINT_URL`, `AWS_ENDPOINT`, `AWS_ENDPOINT_URL_S3`, `AWS_ALLOW_HTTP`,
//! `AWS_VIRTUAL_HOSTED_STYLE_REQUEST`, ...), then the URL, then `[storage.s3]`, each later
//! one winning. Two groups are taken whole from one place: credentials (an access key id
//! in the configuration replaces the environment's key, secret and session token, so a
//! token of another identity is never sent with it) and the endpoint (a configured one
//! replaces `AWS_ENDPOINT_URL_S3` too, which object_store would otherwise prefer).
//! Variables without the `AWS_` prefix are never read.

use object_store::ClientConfigKey;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};

use crate::config::S3Settings;

/// The builder for the bucket `url` names, from `env` (the process environment, given as
/// pairs) and `cfg`; or what is wrong with them.
pub(super) fn builder(
    url: &url::Url,
    cfg: &S3Settings,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<AmazonS3Builder, String> {
    use AmazonS3ConfigKey as K;
    if cfg.access_key_id.is_empty() != cfg.secret_access_key.is_empty() {
        return Err("storage.s3.access_key_id and storage.s3.secret_access_key must be given together".into());
    }
    let own_credentials = !cfg.access_key_id.is_empty();
    let own_endpoint = !cfg.endpoint.is_empty();
    let mut b = AmazonS3Builder::new();
    for (name, value) in env {
        if !name.starts_with("AWS_") {
            continue;
        }
        let Ok(key) = name.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() else { continue };
        let replaced = match key {
            K::AccessKeyId | K::SecretAccessKey | K::Token => own_credentials,
            K::Endpoint | K::S3Endpoint => own_endpoint,
            _ => false,
        };
        if !replaced {
            b = b.with_config(key, value);
        }
    }
    b = b.with_url(url.as_str());
    for (key, value) in [
        (K::Endpoint, &cfg.endpoint),
        (K::Region, &cfg.region),
        (K::AccessKeyId, &cfg.access_key_id),
        (K::SecretAccessKey, &cfg.secret_access_key),
        (K::Token, &cfg.session_token),
    ] {
        if !value.is_empty() {
            b = b.with_config(key, value.as_str());
        }
    }
    if let Some(allow) = cfg.allow_http {
        b = b.with_allow_http(allow);
    }
    if let Some(virtual_hosted) = cfg.virtual_hosted_style {
        b = b.with_virtual_hosted_style_request(virtual_hosted);
    }
    // object_store would only fail each request, with "builder error".
    let endpoint = b.get_config_value(&K::S3Endpoint).or_else(|| b.get_config_value(&K::Endpoint));
    let allow_http = b.get_config_value(&K::Client(ClientConfigKey::AllowHttp));
    if let Some(endpoint) = endpoint.filter(|e| e.starts_with("http://"))
        && allow_http.as_deref() != Some("true")
    {
        return Err(format!(
            "the endpoint {endpoint} is plain HTTP: set storage.s3.allow_http = true (or AWS_ALLOW_HTTP=true) to use it"
        ));
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn url() -> url::Url {
        url::Url::parse("s3://bucket/prefix").expect("url")
    }

    fn build(url: &url::Url, cfg: &S3Settings, env: Vec<(String, String)>) -> AmazonS3Builder {
        builder(url, cfg, env).expect("a usable configuration")
    }

    fn value(b: &AmazonS3Builder, key: AmazonS3ConfigKey) -> Option<String> {
        b.get_config_value(&key)
    }

    #[test]
    fn the_standard_aws_variables_are_read() {
        let b = build(
            &url(),
            &S3Settings::default(),
            env(&[
                ("AWS_ACCESS_KEY_ID", "env-key"),
                ("AWS_SECRET_ACCESS_KEY", "env-secret"),
                ("AWS_SESSION_TOKEN", "env-token"),
                ("AWS_DEFAULT_REGION", "eu-west-1"),
                ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
                ("AWS_ALLOW_HTTP", "true"),
                ("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "true"),
            ]),
        );
        use AmazonS3ConfigKey as K;
        assert_eq!(value(&b, K::AccessKeyId).as_deref(), Some("env-key"));
        assert_eq!(value(&b, K::SecretAccessKey).as_deref(), Some("env-secret"));
        assert_eq!(value(&b, K::Token).as_deref(), Some("env-token"));
        assert_eq!(value(&b, K::Region).as_deref(), Some("eu-west-1"));
        assert_eq!(value(&b, K::Endpoint).as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(value(&b, K::Client(object_store::ClientConfigKey::AllowHttp)).as_deref(), Some("true"));
        assert_eq!(value(&b, K::VirtualHostedStyleRequest).as_deref(), Some("true"));
    }

    #[test]
    fn aws_region_beats_aws_default_region_in_any_order() {
        for vars in [
            [("AWS_REGION", "eu-north-1"), ("AWS_DEFAULT_REGION", "eu-west-1")],
            [("AWS_DEFAULT_REGION", "eu-west-1"), ("AWS_REGION", "eu-north-1")],
        ] {
            let b = build(&url(), &S3Settings::default(), env(&vars));
            assert_eq!(value(&b, AmazonS3ConfigKey::Region).as_deref(), Some("eu-north-1"), "{vars:?}");
        }
    }

    #[test]
    fn only_variables_with_the_aws_prefix_are_read() {
        // object_store's own parser also knows these bare names; a process environment
        // holding them (a shell's REGION, a CI's TOKEN) must not configure the store.
        let b = build(
            &url(),
            &S3Settings::default(),
            env(&[("REGION", "xx-1"), ("ENDPOINT", "http://elsewhere"), ("TOKEN", "t"), ("BUCKET", "other")]),
        );
        use AmazonS3ConfigKey as K;
        assert_eq!(value(&b, K::Region), None);
        assert_eq!(value(&b, K::Endpoint), None);
        assert_eq!(value(&b, K::Token), None);
        assert_eq!(value(&b, K::Bucket), None);
    }

    #[test]
    fn configured_keys_win_over_the_environment() {
        let cfg = S3Settings {
            endpoint: "https://s3.example.test".into(),
            region: "ap-south-1".into(),
            access_key_id: "cfg-key".into(),
            secret_access_key: "cfg-secret".into(),
            allow_http: Some(false),
            virtual_hosted_style: Some(false),
            ..Default::default()
        };
        let b = build(
            &url(),
            &cfg,
            env(&[
                ("AWS_ACCESS_KEY_ID", "env-key"),
                ("AWS_SECRET_ACCESS_KEY", "env-secret"),
                ("AWS_SESSION_TOKEN", "env-token"),
                ("AWS_REGION", "eu-west-1"),
                ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
                ("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9001"),
                ("AWS_ALLOW_HTTP", "true"),
                ("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "true"),
            ]),
        );
        use AmazonS3ConfigKey as K;
        assert_eq!(value(&b, K::AccessKeyId).as_deref(), Some("cfg-key"));
        assert_eq!(value(&b, K::SecretAccessKey).as_deref(), Some("cfg-secret"));
        assert_eq!(value(&b, K::Token), None, "the environment's token belongs to its own key");
        assert_eq!(value(&b, K::Region).as_deref(), Some("ap-south-1"));
        assert_eq!(value(&b, K::Endpoint).as_deref(), Some("https://s3.example.test"));
        assert_eq!(value(&b, K::S3Endpoint), None, "object_store would prefer it to the configured endpoint");
        assert_eq!(value(&b, K::Client(object_store::ClientConfigKey::AllowHttp)).as_deref(), Some("false"));
        assert_eq!(value(&b, K::VirtualHostedStyleRequest).as_deref(), Some("false"));
    }

    #[test]
    fn half_a_key_pair_and_plain_http_without_leave_are_refused() {
        let half = S3Settings { access_key_id: "cfg-key".into(), ..Default::default() };
        let err = builder(&url(), &half, env(&[("AWS_SECRET_ACCESS_KEY", "env-secret")])).err();
        assert!(err.is_some_and(|e| e.contains("storage.s3.secret_access_key")));
        let http = S3Settings { endpoint: "http://127.0.0.1:9000".into(), ..Default::default() };
        let err = builder(&url(), &http, env(&[])).err();
        assert!(err.is_some_and(|e| e.contains("storage.s3.allow_http")));
        assert!(builder(&url(), &http, env(&[("AWS_ALLOW_HTTP", "true")])).is_ok());
        let allowed = S3Settings { allow_http: Some(true), ..http };
        assert!(builder(&url(), &allowed, env(&[])).is_ok());
        let err = builder(&url(), &S3Settings::default(), env(&[("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")])).err();
        assert!(err.is_some_and(|e| e.contains("AWS_ALLOW_HTTP")));
    }
}
