//! `/subscriptions` and `/subscriptions/{id}` (NMS 6.17, 6.18), and the rendering of
//! notification lists (`nmsEventList`, NMS 6.19).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use super::search::criteria_input;
use super::wire::{FlagListW, Scalar, SearchCriteriaW};
use super::{Access, AppState, BoxUrls, json_body, ok_json, param};
use crate::error::{Error, Result};
use crate::nms::subscriptions::{EventList, SubscriptionInput};
use crate::nms::sync::SyncEvent;
use crate::store::{Change, Subscription};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CallbackReferenceW {
    #[serde(rename = "notifyURL")]
    notify_url: String,
    callback_data: Option<String>,
    notification_format: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscriptionIn {
    callback_reference: CallbackReferenceW,
    duration: Option<Scalar>,
    filter: Option<SearchCriteriaW>,
    client_correlator: Option<String>,
    restart_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscriptionEnvelope {
    nms_subscription: SubscriptionIn,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateIn {
    duration: Option<Scalar>,
    restart_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateEnvelope {
    nms_subscription_update: UpdateIn,
}

fn seconds(v: Option<Scalar>, part: &str) -> Result<Option<u64>> {
    v.map(|s| s.0.trim().parse::<u64>().map_err(|_| Error::invalid(part.to_string()))).transpose()
}

/// The channel a `notifyURL` names when it is a notification channel `callbackURL` of this
/// server (`.../notificationchannel/v1/{userId}/channels/{id}/callback`); `None`: a webhook.
/// Scheme and host may be rewritten by clients (some force https): paths are compared.
fn channel_of(state: &AppState, url: &str) -> Result<Option<String>> {
    let parsed = url::Url::parse(url).map_err(|_| Error::invalid(format!("notifyURL {url} (an absolute URL)")))?;
    let base =
        url::Url::parse(&state.public_url).map(|u| u.path().trim_end_matches('/').to_string()).unwrap_or_default();
    let Some(rest) = parsed.path().strip_prefix(base.as_str()) else { return Ok(None) };
    let segs: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
    match segs.as_slice() {
        ["notificationchannel", "v1", _, "channels", id, "callback"] if !id.is_empty() => Ok(Some(id.to_string())),
        ["notificationchannel", ..] => {
            Err(Error::invalid(format!("notifyURL {url} (not a notification channel callbackURL)")))
        }
        _ => Ok(None),
    }
}

/// The wire form of a subscription; the remaining `duration` is computed now.
fn render(urls: &BoxUrls, s: &Subscription) -> Value {
    let remaining = super::remaining_secs(s.expires_at_ms);
    let mut callback = json!({ "notifyURL": s.notify_url });
    if let Some(d) = &s.callback_data {
        callback["callbackData"] = json!(d);
    }
    if let Some(f) = &s.notification_format {
        callback["notificationFormat"] = json!(f);
    }
    let mut v = json!({
        "callbackReference": callback,
        "duration": remaining,
        "resourceURL": urls.subscription(&s.public_id),
        "index": s.next_index,
        "restartToken": s.restart_token,
    });
    if let Some(c) = &s.client_correlator {
        v["clientCorrelator"] = json!(c);
    }
    v
}

/// `GET /subscriptions`: the caller's subscriptions on this box.
pub async fn list(access: Access, state: web::Data<AppState>) -> Result<HttpResponse> {
    let subs = state.nms.subscriptions(&access.b, &access.principal.name).await?;
    let subscription: Vec<Value> = subs.iter().map(|s| render(&access.urls, s)).collect();
    Ok(ok_json(
        json!({"nmsSubscriptionList": {"subscription": subscription, "resourceURL": access.urls.subscriptions()}}),
    ))
}

/// `POST /subscriptions`: 201 + `Location`; a repeated `clientCorrelator` answers the
/// existing subscription.
pub async fn create(
    req: HttpRequest,
    access: Access,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let env: SubscriptionEnvelope = json_body(&req, payload, state.limits.max_json_bytes, "nmsSubscription").await?;
    let s = env.nms_subscription;
    let channel = channel_of(&state, &s.callback_reference.notify_url)?;
    let input = SubscriptionInput {
        notify_url: s.callback_reference.notify_url,
        channel,
        callback_data: s.callback_reference.callback_data,
        notification_format: s.callback_reference.notification_format,
        duration: seconds(s.duration, "duration")?,
        filter: s.filter.map(criteria_input).transpose()?,
        client_correlator: s.client_correlator,
        restart_token: s.restart_token,
    };
    let sub = state.nms.create_subscription(&access.b, &access.principal.name, input).await?;
    let url = access.urls.subscription(&sub.public_id);
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, url))
        .json(json!({ "nmsSubscription": render(&access.urls, &sub) })))
}

/// `GET /subscriptions/{id}`.
pub async fn get(req: HttpRequest, access: Access, state: web::Data<AppState>) -> Result<HttpResponse> {
    let id = param(&req, "subscriptionId")?;
    let s = state.nms.subscription(&access.b, &access.principal.name, &id, &access.uri).await?;
    Ok(ok_json(json!({ "nmsSubscription": render(&access.urls, &s) })))
}

/// `POST /subscriptions/{id}` with `nmsSubscriptionUpdate`: 200 with the subscription.
pub async fn update(
    req: HttpRequest,
    access: Access,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let id = param(&req, "subscriptionId")?;
    let env: UpdateEnvelope = json_body(&req, payload, state.limits.max_json_bytes, "nmsSubscriptionUpdate").await?;
    let u = env.nms_subscription_update;
    let duration = seconds(u.duration, "duration")?;
    let s = state
        .nms
        .update_subscription(&access.b, &access.principal.name, &id, duration, u.restart_token, &access.uri)
        .await?;
    Ok(ok_json(json!({ "nmsSubscription": render(&access.urls, &s) })))
}

/// `DELETE /subscriptions/{id}`: 204.
pub async fn delete(req: HttpRequest, access: Access, state: web::Data<AppState>) -> Result<HttpResponse> {
    let id = param(&req, "subscriptionId")?;
    state.nms.delete_subscription(&access.b, &access.principal.name, &id, &access.uri).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST {box}/operations/resetBox` (service accounts only): empty the box and give it a
/// new validity, so that every subscriber gets `resetBox`; 204.
pub async fn reset_box(access: Access, state: web::Data<AppState>) -> Result<HttpResponse> {
    if !access.principal.is_service {
        return Err(Error::Forbidden { reason: "resetting a box is reserved to service accounts".into() });
    }
    let b = state.nms.reset_box(&access.b).await?;
    tracing::info!(principal = %access.principal.name, box_id = b.id, validity = b.validity, "box reset");
    Ok(HttpResponse::NoContent().finish())
}

/// One `nmsEvent`.
fn event(urls: &BoxUrls, e: &SyncEvent) -> Value {
    match e {
        SyncEvent::ResetBox => json!({ "resetBox": {} }),
        SyncEvent::Change(Change::Object(o)) => {
            let mut v = json!({
                "resourceURL": urls.object(&o.public_id),
                "parentFolder": urls.folder(&o.folder_public_id),
                "flags": FlagListW { flag: o.flags.clone(), resource_url: Some(urls.object_flags(&o.public_id)) },
                "lastModSeq": o.last_mod_seq,
            });
            if let Some(c) = &o.correlation_id {
                v["correlationId"] = json!(c);
            }
            if let Some(c) = &o.correlation_tag {
                v["correlationTag"] = json!(c);
            }
            json!({ "changedObject": v })
        }
        SyncEvent::Change(Change::Folder(f)) => {
            let mut v = json!({
                "resourceURL": urls.folder(&f.public_id),
                "name": f.name,
                "lastModSeq": f.last_mod_seq,
            });
            if let Some(p) = &f.parent_public_id {
                v["parentFolder"] = json!(urls.folder(p));
            }
            json!({ "changedFolder": v })
        }
        SyncEvent::Change(Change::Gone(t)) => {
            let object = t.kind == "object";
            let resource_url = if object { urls.object(&t.public_id) } else { urls.folder(&t.public_id) };
            let mut v = json!({ "resourceURL": resource_url, "lastModSeq": t.last_mod_seq });
            if let Some(c) = &t.correlation_id {
                v["correlationId"] = json!(c);
            }
            if let Some(c) = &t.correlation_tag {
                v["correlationTag"] = json!(c);
            }
            let key = match (object, t.reason.as_str()) {
                (true, "expired") => "expiredObject",
                (true, _) => "deletedObject",
                (false, "expired") => "expiredFolder",
                (false, _) => "deletedFolder",
            };
            json!({ key: v })
        }
    }
}

/// `{"nmsEventList": ..}` of one list.
pub fn render_list(public_url: &str, l: &EventList) -> Value {
    let urls = BoxUrls::new(public_url, &l.b.store, &l.b.address);
    let mut v = json!({
        "nmsEvent": l.events.iter().map(|e| event(&urls, e)).collect::<Vec<_>>(),
        "index": l.index,
        "restartToken": l.restart_token,
        "link": [{ "rel": "NmsSubscription", "href": urls.subscription(&l.subscription) }],
    });
    if let Some(d) = &l.callback_data {
        v["callbackData"] = json!(d);
    }
    json!({ "nmsEventList": v })
}
