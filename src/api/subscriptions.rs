//! `/subscriptions` and `/subscriptions/{id}` (NMS 6.17, 6.18), and the rendering of
//! notification lists (`nmsEventList`, NMS 6.19).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use super::objects::located_flags;
use super::search::criteria_input;
use super::wire::{
    CallbackReferenceOut, ChangedFolderW, ChangedObjectW, Empty, EventListEnvelope, EventListW, EventW, GoneW, LinkW,
    SubscriptionEnvelope, SubscriptionListOut, SubscriptionListW, SubscriptionOut, SubscriptionW, UpdateEnvelope,
    number,
};
use super::{Access, AppState, BoxUrls, Oma, ok_json, param};
use crate::error::{Error, Result};
use crate::model::{Change, Subscription};
use crate::nms::subscriptions::{EventList, SubscriptionInput};
use crate::nms::sync::SyncEvent;

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
fn render(urls: &BoxUrls, s: &Subscription) -> SubscriptionW {
    SubscriptionW {
        callback_reference: CallbackReferenceOut {
            notify_url: s.notify_url.clone(),
            callback_data: s.callback_data.clone(),
            notification_format: s.notification_format.clone(),
        },
        duration: super::remaining_secs(s.expires_at_ms),
        resource_url: urls.subscription(&s.public_id),
        index: s.next_index,
        restart_token: s.restart_token.clone(),
        client_correlator: s.client_correlator.clone(),
    }
}

/// `GET /subscriptions`: the caller's subscriptions on this box.
pub async fn list(access: Access, state: web::Data<AppState>) -> Result<HttpResponse> {
    let subs = state.nms.subscriptions(&access.b, &access.principal.name).await?;
    let subscription: Vec<SubscriptionW> = subs.iter().map(|s| render(&access.urls, s)).collect();
    Ok(ok_json(SubscriptionListOut {
        nms_subscription_list: SubscriptionListW { subscription, resource_url: access.urls.subscriptions() },
    }))
}

/// `POST /subscriptions`: 201 + `Location`; a repeated `clientCorrelator` answers the
/// existing subscription.
pub async fn create(oma: Oma<SubscriptionEnvelope>, state: web::Data<AppState>) -> Result<HttpResponse> {
    let (access, s) = (oma.access, oma.body.nms_subscription);
    let channel = channel_of(&state, &s.callback_reference.notify_url)?;
    let input = SubscriptionInput {
        notify_url: s.callback_reference.notify_url,
        channel,
        callback_data: s.callback_reference.callback_data,
        notification_format: s.callback_reference.notification_format,
        duration: number(s.duration, "duration")?,
        filter: s.filter.map(criteria_input).transpose()?,
        client_correlator: s.client_correlator,
        restart_token: s.restart_token,
    };
    let sub = state.nms.create_subscription(&access.b, &access.principal.name, input).await?;
    let url = access.urls.subscription(&sub.public_id);
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, url))
        .json(SubscriptionOut { nms_subscription: render(&access.urls, &sub) }))
}

/// `GET /subscriptions/{id}`.
pub async fn get(req: HttpRequest, access: Access, state: web::Data<AppState>) -> Result<HttpResponse> {
    let id = param(&req, "subscriptionId")?;
    let s = state.nms.subscription(&access.b, &access.principal.name, &id).await?;
    Ok(ok_json(SubscriptionOut { nms_subscription: render(&access.urls, &s) }))
}

/// `POST /subscriptions/{id}` with `nmsSubscriptionUpdate`: 200 with the subscription.
pub async fn update(req: HttpRequest, oma: Oma<UpdateEnvelope>, state: web::Data<AppState>) -> Result<HttpResponse> {
    let (access, u) = (oma.access, oma.body.nms_subscription_update);
    let id = param(&req, "subscriptionId")?;
    let duration = number(u.duration, "duration")?;
    let s = state.nms.update_subscription(&access.b, &access.principal.name, &id, duration, u.restart_token).await?;
    Ok(ok_json(SubscriptionOut { nms_subscription: render(&access.urls, &s) }))
}

/// `DELETE /subscriptions/{id}`: 204.
pub async fn delete(req: HttpRequest, access: Access, state: web::Data<AppState>) -> Result<HttpResponse> {
    let id = param(&req, "subscriptionId")?;
    state.nms.delete_subscription(&access.b, &access.principal.name, &id).await?;
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

fn event<'a>(urls: &BoxUrls, e: &'a SyncEvent) -> EventW<'a> {
    match e {
        SyncEvent::ResetBox => EventW::ResetBox(Empty {}),
        SyncEvent::Change(Change::Object(o)) => EventW::ChangedObject(ChangedObjectW {
            resource_url: urls.object(&o.public_id),
            parent_folder: urls.folder(&o.folder_public_id),
            flags: located_flags(urls, o),
            last_mod_seq: o.last_mod_seq,
            correlation_id: o.correlation_id.as_deref(),
            correlation_tag: o.correlation_tag.as_deref(),
        }),
        SyncEvent::Change(Change::Folder(f)) => EventW::ChangedFolder(ChangedFolderW {
            resource_url: urls.folder(&f.public_id),
            parent_folder: f.parent_public_id.as_deref().map(|p| urls.folder(p)),
            name: &f.name,
            last_mod_seq: f.last_mod_seq,
        }),
        SyncEvent::Change(Change::Gone(t)) => {
            let object = t.kind == "object";
            let gone = GoneW {
                resource_url: if object { urls.object(&t.public_id) } else { urls.folder(&t.public_id) },
                last_mod_seq: t.last_mod_seq,
                correlation_id: t.correlation_id.as_deref(),
                correlation_tag: t.correlation_tag.as_deref(),
            };
            match (object, t.reason.as_str()) {
                (true, "expired") => EventW::ExpiredObject(gone),
                (true, _) => EventW::DeletedObject(gone),
                (false, "expired") => EventW::ExpiredFolder(gone),
                (false, _) => EventW::DeletedFolder(gone),
            }
        }
    }
}

/// `{"nmsEventList": ..}` of one list.
pub fn render_list<'a>(public_url: &str, l: &'a EventList) -> EventListEnvelope<'a> {
    let urls = BoxUrls::new(public_url, &l.b.store, &l.b.address);
    EventListEnvelope {
        nms_event_list: EventListW {
            nms_event: l.events.iter().map(|e| event(&urls, e)).collect(),
            index: l.index,
            restart_token: &l.restart_token,
            link: [LinkW { rel: "NmsSubscription", href: urls.subscription(&l.subscription) }],
            callback_data: l.callback_data.as_deref(),
        },
    }
}
