//! The OMA Notification Channel API (long polling):
//! `/notificationchannel/v1/{userId}/channels[/{id}[/channelLifetime | /poll]]`.
//!
//! A channel belongs to the login that made it, under a `{userId}` that is one of its box
//! addresses (or `acr:auth`; service accounts: any). Its `callbackURL` is what subscriptions
//! name as `notifyURL`; its `channelURL` is where the client long-polls.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use super::subscriptions::render_list;
use super::urls::encode_segment;
use super::wire::{Scalar, number};
use super::{AppState, auth_request, json_body, param, read_limited};
use crate::auth::{ACR_AUTH, Principal, Scope};
use crate::error::{Error, Result};
use crate::model::Channel;
use crate::nms::subscriptions::{ChannelInput, PollOutcome};

/// The channel resources' path prefix.
pub const NC_SCOPE: &str = "/notificationchannel/v1/{userId}";

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChannelDataW {
    max_notifications: Option<Scalar>,
    max_wait_time: Option<Scalar>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChannelIn {
    client_correlator: Option<String>,
    application_tag: Option<String>,
    channel_type: String,
    #[serde(default)]
    channel_data: ChannelDataW,
    channel_lifetime: Option<Scalar>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChannelEnvelope {
    notification_channel: ChannelIn,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LifetimeIn {
    /// Absent: the server's default (NC 5.2.2.14).
    channel_lifetime: Option<Scalar>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LifetimeEnvelope {
    notification_channel_lifetime: LifetimeIn,
}

fn state_of(req: &HttpRequest) -> Result<web::Data<AppState>> {
    req.app_data::<web::Data<AppState>>().cloned().ok_or_else(|| Error::internal("application state missing"))
}

/// Authenticate, and resolve `{userId}` to an address the principal may use.
async fn caller(req: &HttpRequest, state: &AppState) -> Result<(Principal, String)> {
    let principal = state.auth.authenticate(&auth_request(req)).await?;
    super::access::tag_principal(req, &principal);
    state.throttle.admit(&principal)?;
    let user = param(req, "userId")?;
    let user = if user == ACR_AUTH {
        // The same address in several stores is one user.
        let mut own: Vec<&String> = principal.boxes.iter().map(|(_, a)| a).collect();
        own.sort();
        own.dedup();
        match own.as_slice() {
            [a] => (*a).clone(),
            _ => return Err(Error::invalid("userId acr:auth (no single box for this principal)")),
        }
    } else {
        user
    };
    if !principal.is_service && !principal.boxes.iter().any(|(_, a)| *a == user) {
        return Err(Error::Forbidden { reason: format!("no access to {user}") });
    }
    // Channels exist to carry subscriptions' notifications: the same scope.
    if !principal.scopes.iter().any(|s| matches!(s, Scope::Subscription | Scope::All)) {
        return Err(principal.missing(Scope::Subscription));
    }
    Ok((principal, user))
}

fn urls(state: &AppState, c: &Channel) -> (String, String, String) {
    let base =
        format!("{}/notificationchannel/v1/{}/channels/{}", state.public_url, encode_segment(&c.user_id), c.public_id);
    (base.clone(), format!("{base}/poll"), format!("{base}/callback"))
}

fn render(state: &AppState, c: &Channel) -> Value {
    let (resource_url, channel_url, callback_url) = urls(state, c);
    let remaining = super::remaining_secs(c.expires_at_ms);
    let mut v = json!({
        "channelType": "LongPolling",
        "channelData": {
            "channelURL": channel_url,
            "maxNotifications": c.max_notifications,
            "maxWaitTime": c.max_wait_secs,
        },
        "channelLifetime": remaining,
        "callbackURL": callback_url,
        "resourceURL": resource_url,
    });
    if let Some(x) = &c.client_correlator {
        v["clientCorrelator"] = json!(x);
    }
    if let Some(x) = &c.application_tag {
        v["applicationTag"] = json!(x);
    }
    v
}

/// `POST channels`: 201 + `Location`.
pub async fn create(req: HttpRequest, payload: web::Payload) -> Result<HttpResponse> {
    let state = state_of(&req)?;
    let (principal, user) = caller(&req, &state).await?;
    let env: ChannelEnvelope = json_body(&req, payload, state.limits.max_json_bytes, "notificationChannel").await?;
    let c = env.notification_channel;
    let input = ChannelInput {
        channel_type: c.channel_type,
        client_correlator: c.client_correlator,
        application_tag: c.application_tag,
        lifetime: number(c.channel_lifetime, "channelLifetime")?,
        max_notifications: number(c.channel_data.max_notifications, "maxNotifications")?,
        max_wait_time: number(c.channel_data.max_wait_time, "maxWaitTime")?,
    };
    let channel = state.nms.create_channel(&principal.name, &user, input).await?;
    let (resource_url, _, _) = urls(&state, &channel);
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, resource_url))
        .json(json!({ "notificationChannel": render(&state, &channel) })))
}

/// `GET channels`: an array of `{notificationChannel, resourceURL}`.
pub async fn list(req: HttpRequest) -> Result<HttpResponse> {
    let state = state_of(&req)?;
    let (principal, user) = caller(&req, &state).await?;
    let list: Vec<Value> = state
        .nms
        .channels(&principal.name, &user)
        .await?
        .iter()
        .map(|c| json!({ "notificationChannel": render(&state, c), "resourceURL": urls(&state, c).0 }))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "notificationChannelList": list })))
}

/// `GET channels/{id}`.
pub async fn get(req: HttpRequest) -> Result<HttpResponse> {
    let state = state_of(&req)?;
    let (principal, _) = caller(&req, &state).await?;
    let c = state.nms.channel(&principal.name, &param(&req, "channelId")?, req.path()).await?;
    Ok(HttpResponse::Ok().json(json!({ "notificationChannel": render(&state, &c) })))
}

/// `DELETE channels/{id}`: 204; an open poll answers 404.
pub async fn delete(req: HttpRequest) -> Result<HttpResponse> {
    let state = state_of(&req)?;
    let (principal, _) = caller(&req, &state).await?;
    state.nms.delete_channel(&principal.name, &param(&req, "channelId")?, req.path()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET channels/{id}/channelLifetime`.
pub async fn get_lifetime(req: HttpRequest) -> Result<HttpResponse> {
    let state = state_of(&req)?;
    let (principal, _) = caller(&req, &state).await?;
    let c = state.nms.channel(&principal.name, &param(&req, "channelId")?, req.path()).await?;
    let remaining = super::remaining_secs(c.expires_at_ms);
    Ok(HttpResponse::Ok().json(json!({ "notificationChannelLifetime": { "channelLifetime": remaining } })))
}

/// `PUT channels/{id}/channelLifetime`: renew. Deployed clients send it without
/// credentials; the unguessable channel id is then the capability.
pub async fn put_lifetime(req: HttpRequest, payload: web::Payload) -> Result<HttpResponse> {
    let state = state_of(&req)?;
    let id = param(&req, "channelId")?;
    if req.headers().contains_key(header::AUTHORIZATION) {
        let (principal, _) = caller(&req, &state).await?;
        state.nms.channel(&principal.name, &id, req.path()).await?;
    }
    let env: LifetimeEnvelope =
        json_body(&req, payload, state.limits.max_json_bytes, "notificationChannelLifetime").await?;
    let asked = number(env.notification_channel_lifetime.channel_lifetime, "channelLifetime")?;
    let c = state.nms.renew_channel(&id, asked, req.path()).await?;
    Ok(HttpResponse::Ok().json(json!({ "notificationChannelLifetime": { "channelLifetime": c.lifetime_secs } })))
}

/// A long poll's answer.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct NotificationListW<'a> {
    notification_list: Vec<super::subscriptions::EventListEnvelope<'a>>,
}

/// `POST channelURL` with `{"longPollingRequestParameters": null}`: 200 with the pending
/// `notificationList` (empty after the server's poll timeout); 409 SVC1012 when a newer poll
/// takes over; 404 when the channel is deleted meanwhile; 429 when the principal already
/// polls `limits.max_polls_per_principal` other channels. A poll counts once against the
/// rate limit, when it starts.
pub async fn poll(req: HttpRequest, payload: web::Payload) -> Result<HttpResponse> {
    let state = state_of(&req)?;
    let (principal, _) = caller(&req, &state).await?;
    let channel = param(&req, "channelId")?;
    // Held until the poll answers, or its client goes away (the future is dropped).
    let _slot = state.throttle.open_poll(&principal, &channel)?;
    // The body carries nothing the server needs; it is read (bounded) and ignored.
    read_limited(payload, state.limits.max_json_bytes).await?;
    let timeout = Duration::from_secs(state.nms.sync.long_poll_secs.max(1));
    match state.nms.poll(&principal.name, &channel, timeout, req.path()).await? {
        PollOutcome::Lists(lists) => {
            let notification_list: Vec<_> = lists.iter().map(|l| render_list(&state.public_url, l)).collect();
            Ok(HttpResponse::Ok().json(NotificationListW { notification_list }))
        }
        PollOutcome::Superseded => Err(Error::SimultaneousPoll),
    }
}
