//! The OMA Notification Channel API (long polling):
//! `/notificationchannel/v1/{userId}/channels[/{id}[/channelLifetime | /poll]]`.
//!
//! A channel belongs to the login that made it, under a `{userId}` that is one of its box
//! addresses (or `acr:auth`; service accounts: any). Its `callbackURL` is what subscriptions
//! name as `notifyURL`; its `channelURL` is where the client long-polls.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use super::subscriptions::render_list;
use super::urls::encode_segment;
use super::wire::{
    ChannelDataOut, ChannelEnvelope, ChannelListEntryW, ChannelListNcOut, ChannelListOut, ChannelListW, ChannelOut,
    ChannelW, LifetimeEnvelope, LifetimeOut, LifetimeOutEnvelope, NotificationListW, number,
};
use super::{AppState, ChannelAccess, Oma, param, read_limited};
use crate::error::{Error, Result};
use crate::model::Channel;
use crate::nms::subscriptions::{ChannelInput, PollOutcome};

/// The URL of `user`'s channel list.
fn list_url(state: &AppState, user: &str) -> String {
    format!("{}/notificationchannel/v1/{}/channels", state.public_url, encode_segment(user))
}

fn urls(state: &AppState, c: &Channel) -> (String, String, String) {
    let base = format!("{}/{}", list_url(state, &c.user_id), c.public_id);
    (base.clone(), format!("{base}/poll"), format!("{base}/callback"))
}

fn render(state: &AppState, c: &Channel) -> ChannelW {
    let (resource_url, channel_url, callback_url) = urls(state, c);
    ChannelW {
        channel_type: "LongPolling".into(),
        channel_data: ChannelDataOut {
            channel_url,
            max_notifications: c.max_notifications,
            max_wait_time: c.max_wait_secs,
        },
        channel_lifetime: super::remaining_secs(c.expires_at_ms),
        callback_url,
        resource_url,
        client_correlator: c.client_correlator.clone(),
        application_tag: c.application_tag.clone(),
    }
}

/// 200 with a `notificationChannelLifetime`.
fn lifetime(channel_lifetime: i64) -> HttpResponse {
    HttpResponse::Ok().json(LifetimeOutEnvelope { notification_channel_lifetime: LifetimeOut { channel_lifetime } })
}

/// `POST channels`: 201 + `Location`.
pub async fn create(oma: Oma<ChannelEnvelope, ChannelAccess>, state: web::Data<AppState>) -> Result<HttpResponse> {
    let (access, c) = (oma.access, oma.body.notification_channel);
    let input = ChannelInput {
        channel_type: c.channel_type,
        client_correlator: c.client_correlator,
        application_tag: c.application_tag,
        lifetime: number(c.channel_lifetime, "channelLifetime")?,
        max_notifications: number(c.channel_data.max_notifications, "maxNotifications")?,
        max_wait_time: number(c.channel_data.max_wait_time, "maxWaitTime")?,
    };
    let channel = state.nms.create_channel(&access.principal()?.name, &access.user, input).await?;
    let (resource_url, _, _) = urls(&state, &channel);
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, resource_url))
        .json(ChannelOut { notification_channel: render(&state, &channel) }))
}

/// `GET channels`: by default an array of `{notificationChannel, resourceURL}`, as deployed
/// clients parse it; with `?listFormat=nc` the Notification Channel spec's own
/// `{"notificationChannel": [..], "resourceURL": ..}` (NC 5.2.2.1, D.1). In XML always the
/// latter: the NC schema and example 6.1.3.1 have only that form, and the deployed array
/// is a JSON habit (`listFormat` still has to be a known value).
pub async fn list(req: HttpRequest, access: ChannelAccess, state: web::Data<AppState>) -> Result<HttpResponse> {
    let nc = match url::form_urlencoded::parse(req.query_string().as_bytes()).find(|(k, _)| k == LIST_FORMAT) {
        None => false,
        Some((_, v)) if v == "nc" => true,
        Some((_, v)) if v == "deployed" => false,
        Some(_) => return Err(Error::invalid_value(LIST_FORMAT, "nc, deployed")),
    } || super::xml::wants_xml(req.headers());
    let channels = state.nms.channels(&access.principal()?.name, &access.user).await?;
    Ok(if nc {
        let notification_channel = channels.iter().map(|c| render(&state, c)).collect();
        let resource_url = list_url(&state, &access.user);
        HttpResponse::Ok()
            .json(ChannelListNcOut { notification_channel_list: ChannelListW { notification_channel, resource_url } })
    } else {
        let list: Vec<ChannelListEntryW> = channels
            .iter()
            .map(|c| ChannelListEntryW { notification_channel: render(&state, c), resource_url: urls(&state, c).0 })
            .collect();
        HttpResponse::Ok().json(ChannelListOut { notification_channel_list: list })
    })
}

/// The query parameter choosing the form of the channel list.
pub const LIST_FORMAT: &str = "listFormat";

/// `GET channels/{id}`.
pub async fn get(req: HttpRequest, access: ChannelAccess, state: web::Data<AppState>) -> Result<HttpResponse> {
    let c = state.nms.channel(&access.principal()?.name, &param(&req, "channelId")?).await?;
    Ok(HttpResponse::Ok().json(ChannelOut { notification_channel: render(&state, &c) }))
}

/// `DELETE channels/{id}`: 204; an open poll answers 404.
pub async fn delete(req: HttpRequest, access: ChannelAccess, state: web::Data<AppState>) -> Result<HttpResponse> {
    state.nms.delete_channel(&access.principal()?.name, &param(&req, "channelId")?).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET channels/{id}/channelLifetime`.
pub async fn get_lifetime(req: HttpRequest, access: ChannelAccess, state: web::Data<AppState>) -> Result<HttpResponse> {
    let c = state.nms.channel(&access.principal()?.name, &param(&req, "channelId")?).await?;
    let remaining = super::remaining_secs(c.expires_at_ms);
    Ok(lifetime(remaining))
}

/// `PUT channels/{id}/channelLifetime`: renew. Deployed clients send it without
/// credentials; the unguessable channel id is then the capability.
pub async fn put_lifetime(
    req: HttpRequest,
    oma: Oma<LifetimeEnvelope, ChannelAccess>,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let id = param(&req, "channelId")?;
    if let Some(principal) = oma.access.principal_if_any() {
        state.nms.channel(&principal.name, &id).await?;
    }
    let env = oma.body;
    let asked = number(env.notification_channel_lifetime.channel_lifetime, "channelLifetime")?;
    let c = state.nms.renew_channel(&id, asked).await?;
    Ok(lifetime(c.lifetime_secs))
}

/// `POST channelURL` with `{"longPollingRequestParameters": null}`: 200 with the pending
/// `notificationList` (empty after the server's poll timeout); 409 SVC1012 when a newer poll
/// takes over; 404 when the channel is deleted meanwhile; 429 when the principal already
/// polls `limits.max_polls_per_principal` other channels. A poll counts once against the
/// rate limit, when it starts.
pub async fn poll(
    req: HttpRequest,
    access: ChannelAccess,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let principal = access.principal()?;
    let channel = param(&req, "channelId")?;
    // Held until the poll answers, or its client goes away (the future is dropped).
    let _slot = state.throttle.open_poll(principal, &channel)?;
    // The body carries nothing the server needs; it is read (bounded) and ignored.
    read_limited(payload, state.limits.max_json_bytes).await?;
    let timeout = Duration::from_secs(state.nms.sync_settings().long_poll_secs.max(1));
    match state.nms.poll(&principal.name, &channel, timeout).await? {
        PollOutcome::Lists(lists) => {
            let notification_list: Vec<_> = lists.iter().map(|l| render_list(&state.public_url, l)).collect();
            Ok(HttpResponse::Ok().json(NotificationListW { notification_list }))
        }
        PollOutcome::Superseded => Err(Error::SimultaneousPoll),
    }
}
