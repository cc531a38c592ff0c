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

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};

use crate::config::S3Settings;

/// The builder for the bucket `url` names, from `env` (the process environment, given as
/// pairs) and `cfg`.
pub(super) fn builder(
    url: &url::Url,
    cfg: &S3Settings,
    env: impl IntoIterator<Item = (String, String)>,
) -> AmazonS3Builder {
    use AmazonS3ConfigKey as K;
    let own_credentials = !cfg.access_key_id.is_empty() || !cfg.secret_access_key.is_empty();
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
    b
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

    fn value(b: &AmazonS3Builder, key: AmazonS3ConfigKey) -> Option<String> {
        b.get_config_value(&key)
    }

    #[test]
    fn the_standard_aws_variables_are_read() {
        let b = builder(
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
            let b = builder(&url(), &S3Settings::default(), env(&vars));
            assert_eq!(value(&b, AmazonS3ConfigKey::Region).as_deref(), Some("eu-north-1"), "{vars:?}");
        }
    }

    #[test]
    fn only_variables_with_the_aws_prefix_are_read() {
        // object_store's own parser also knows these bare names; a process environment
        // holding them (a shell's REGION, a CI's TOKEN) must not configure the store.
        let b = builder(
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
            endpoint: "http://127.0.0.1:7000".into(),
            region: "ap-south-1".into(),
            access_key_id: "cfg-key".into(),
            secret_access_key: "cfg-secret".into(),
            allow_http: Some(false),
            virtual_hosted_style: Some(false),
            ..Default::default()
        };
        let b = builder(
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
        assert_eq!(value(&b, K::Endpoint).as_deref(), Some("http://127.0.0.1:7000"));
        assert_eq!(value(&b, K::S3Endpoint), None, "object_store would prefer it to the configured endpoint");
        assert_eq!(value(&b, K::Client(object_store::ClientConfigKey::AllowHttp)).as_deref(), Some("false"));
        assert_eq!(value(&b, K::VirtualHostedStyleRequest).as_deref(), Some("false"));
    }
}
