//! The API description: an OpenAPI 3.1 document generated from the operation table (every
//! route, with its method, path parameters and scope) and the wire types (request and
//! response documents, the OMA error body), with the security schemes the authenticator
//! accepts and examples taken from `fixtures/`. It is built once, when the server starts,
//! and served as bytes (`GET /openapi.json`); `GET /docs` renders it with Swagger UI, which
//! the binary carries (no network access needed to show it).

use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::example::ExampleBuilder;
use utoipa::openapi::header::Header;
use utoipa::openapi::info::InfoBuilder;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem, PathsBuilder};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::{ResponseBuilder, ResponsesBuilder};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Ref, Schema, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::server::Server;
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{OpenApi, RefOr, Required};
use utoipa::{OpenApi as _, ToSchema};

use super::wire::*;
use crate::auth::{Family, Operation};

/// Routes served outside the operation table, without credentials (all `GET`): path,
/// summary, status and media type of the answer. The route table registers exactly these.
pub const SERVICE_ROUTES: &[(&str, &str, &str, &str)] = &[
    ("/health", "Liveness: 200 while the process serves (an alias of /healthz)", "200", "application/json"),
    ("/healthz", "Liveness: 200 while the process serves, without touching the database", "200", "application/json"),
    (
        "/readyz",
        "Readiness: 200 when the database and the payload store answer in time, else 503",
        "200",
        "application/json",
    ),
    ("/metrics", "Prometheus metrics (service accounts, or on server.metrics_listen)", "200", "text/plain"),
    ("/openapi.json", "This API description (OpenAPI 3.1)", "200", "application/json"),
    ("/docs", "Redirects to /docs/", "308", ""),
    ("/docs/", "This API description as a browsable page (Swagger UI)", "200", "text/html"),
];

/// Every schema the document names; the ones they refer to come along.
#[derive(utoipa::OpenApi)]
#[openapi(components(schemas(
    ObjectEnvelope,
    FolderEnvelope,
    NameEnvelope,
    FlagListEnvelope,
    PathListEnvelope,
    SelectionEnvelope,
    ObjectListEnvelope,
    BulkUpdateEnvelope,
    BulkDeleteEnvelope,
    TargetSourceRefEnvelope,
    SubscriptionEnvelope,
    UpdateEnvelope,
    ChannelEnvelope,
    LifetimeEnvelope,
    ReferenceOut,
    ObjectOut,
    ObjectListOut,
    ObjectReferenceListOut,
    FolderOut,
    FolderListOut,
    FlagListOut,
    NameOut,
    BulkResponseListOut,
    SubscriptionOut,
    SubscriptionListOut,
    ChannelOut,
    ChannelListNcOut,
    ChannelListOut,
    LifetimeOutEnvelope,
    NotificationListW,
    EmptyEnvelope,
    RequestErrorOut,
)))]
struct Schemas;

/// A reference to the component schema of `T`.
fn schema<T: ToSchema>() -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(T::name()))
}

/// One of several documents.
fn one_of(items: Vec<RefOr<Schema>>) -> RefOr<Schema> {
    let mut b = OneOfBuilder::new();
    for i in items {
        b = b.item(i);
    }
    RefOr::T(Schema::OneOf(b.build()))
}

fn string() -> RefOr<Schema> {
    ObjectBuilder::new().schema_type(Type::String).into()
}

/// A JSON document, with named examples.
fn json(schema: RefOr<Schema>, examples: Vec<(&str, serde_json::Value)>) -> utoipa::openapi::content::Content {
    let mut b = ContentBuilder::new().schema(Some(schema));
    if !examples.is_empty() {
        b = b.examples_from_iter(
            examples.into_iter().map(|(name, v)| (name, ExampleBuilder::new().summary(name).value(Some(v)).build())),
        );
    }
    b.build()
}

/// The same document in the OMA XML binding (the JSON member names are the element names;
/// see docs/api.md, XML).
fn xml_document(schema: RefOr<Schema>) -> utoipa::openapi::content::Content {
    ContentBuilder::new().schema(Some(schema)).build()
}

/// What an operation takes as its body.
enum Body {
    None,
    /// A JSON document (and the examples of it).
    Json(RefOr<Schema>, Vec<(&'static str, serde_json::Value)>),
    /// A JSON document or a multipart deposit (root fields, then payload parts).
    Deposit(RefOr<Schema>, Vec<(&'static str, serde_json::Value)>),
    /// A dummy body, read and ignored.
    Ignored,
}

/// What an operation answers on success.
enum Answer {
    /// A JSON document with this status.
    Json(&'static str, Box<RefOr<Schema>>),
    /// No content.
    NoContent,
    /// Bytes of their own media type.
    Bytes(&'static str),
}

/// How each operation is described: summary, body, answers and query parameters.
struct Described {
    summary: &'static str,
    body: Body,
    answers: Vec<(Answer, &'static str)>,
    query: Vec<(&'static str, RefOr<Schema>, bool, &'static str)>,
    /// A documented non-error answer to client errors (bulk lists, the `Empty` 404).
    client_errors: Option<RefOr<Schema>>,
}

fn fixture(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or(serde_json::Value::Null)
}

/// Deposits of the fixtures, as examples of an object's root fields.
fn deposit_examples() -> Vec<(&'static str, serde_json::Value)> {
    vec![
        ("sms", fixture(include_str!("../../fixtures/walkthrough/sms-root-fields.json"))),
        ("chat message with an image", fixture(include_str!("../../fixtures/cpm/cpim-chat-image.root-fields.json"))),
        ("file transfer history", fixture(include_str!("../../fixtures/cpm/file-transfer-history.root-fields.json"))),
        ("call log", fixture(include_str!("../../fixtures/cpm/call-log-geolocation.root-fields.json"))),
    ]
}

fn describe(op: Operation) -> Described {
    use Operation::*;
    let d = |summary, body, answers, query| Described { summary, body, answers, query, client_errors: None };
    let ok = |s| vec![(Answer::Json("200", Box::new(s)), "OK")];
    let created = |s| vec![(Answer::Json("201", Box::new(s)), "Created (`Location` names it)")];
    let bulk = || Described {
        summary: "",
        body: Body::None,
        answers: ok(schema::<BulkResponseListOut>()),
        query: vec![],
        client_errors: Some(schema::<BulkResponseListOut>()),
    };
    let with = |mut b: Described, summary, body| {
        b.summary = summary;
        b.body = body;
        b
    };
    let flag_one = |summary, answers| Described {
        summary,
        body: Body::None,
        answers,
        query: vec![],
        client_errors: Some(schema::<EmptyEnvelope>()),
    };
    let path_query =
        |required| vec![("path", string(), required, "The path of the object or folder (`/RCSMessageStore/…`)")];
    let json_of = |s| Body::Json(s, vec![]);
    match op {
        ObjectPathToIdGet => {
            d("Look an object up by its path", Body::None, ok(schema::<ReferenceOut>()), path_query(true))
        }
        FolderPathToIdGet => d(
            "Look a folder up by its path (without one: the root folder)",
            Body::None,
            ok(schema::<ReferenceOut>()),
            path_query(false),
        ),
        ObjectPathToIdPost => with(bulk(), "Look objects up by their paths", json_of(schema::<PathListEnvelope>())),
        FolderPathToIdPost => with(bulk(), "Look folders up by their paths", json_of(schema::<PathListEnvelope>())),
        ObjectSearch => d(
            "Search objects",
            json_of(schema::<SelectionEnvelope>()),
            ok(one_of(vec![schema::<ObjectListOut>(), schema::<ObjectReferenceListOut>()])),
            vec![],
        ),
        FolderSearch => {
            d("Search folders", json_of(schema::<SelectionEnvelope>()), ok(schema::<FolderListOut>()), vec![])
        }
        ObjectBulkCreation => with(
            bulk(),
            "Create several objects (JSON, or multipart with one payload part per object)",
            Body::Deposit(schema::<ObjectListEnvelope>(), vec![]),
        ),
        ObjectBulkUpdate | ObjectBulkUpdateDelete => {
            with(bulk(), "Add or remove flags of several objects", json_of(schema::<BulkUpdateEnvelope>()))
        }
        ObjectBulkDelete | ObjectBulkDeletePost => {
            with(bulk(), "Delete several objects", json_of(schema::<BulkDeleteEnvelope>()))
        }
        FolderCopy => {
            with(bulk(), "Copy objects and folders into a folder", json_of(schema::<TargetSourceRefEnvelope>()))
        }
        FolderMove => {
            with(bulk(), "Move objects and folders into a folder", json_of(schema::<TargetSourceRefEnvelope>()))
        }
        ObjectCreate => d(
            "Deposit an object (JSON root fields, or multipart root fields and payload)",
            Body::Deposit(schema::<ObjectEnvelope>(), deposit_examples()),
            created(schema::<ReferenceOut>()),
            vec![],
        ),
        ObjectGet => d("Read an object", Body::None, ok(schema::<ObjectOut>()), vec![]),
        ObjectDelete => d("Delete an object and its payload", Body::None, vec![(Answer::NoContent, "Deleted")], vec![]),
        ObjectFlagsGet | FolderFlagsGet => d("Read the flags", Body::None, ok(schema::<FlagListOut>()), vec![]),
        ObjectFlagsPut | FolderFlagsPut => {
            d("Replace the flags", json_of(schema::<FlagListEnvelope>()), ok(schema::<FlagListOut>()), vec![])
        }
        ObjectFlagGet | FolderFlagGet => {
            flag_one("Whether a flag is set (404 with `empty`: it is not)", vec![(Answer::NoContent, "Set")])
        }
        ObjectFlagPut | FolderFlagPut => Described {
            body: Body::Ignored,
            ..flag_one(
                "Set a flag",
                vec![
                    (Answer::Json("201", Box::new(schema::<EmptyEnvelope>())), "Set now (Location names it)"),
                    (Answer::NoContent, "Already set"),
                ],
            )
        },
        ObjectFlagDelete | FolderFlagDelete => {
            flag_one("Clear a flag (404 with `empty`: it was not set)", vec![(Answer::NoContent, "Cleared")])
        }
        ObjectPayloadGet => d(
            "Read the payload: one part as itself, several as a MIME multipart",
            Body::None,
            vec![(Answer::Bytes("200"), "The payload")],
            vec![],
        ),
        ObjectPayloadPartGet => d(
            "Read one payload part (a single byte range is served)",
            Body::None,
            vec![(Answer::Bytes("200"), "The part"), (Answer::Bytes("206"), "The range asked for")],
            vec![],
        ),
        FolderCreate => {
            d("Create a folder", json_of(schema::<FolderEnvelope>()), created(schema::<ReferenceOut>()), vec![])
        }
        FolderGet => d(
            "Read a folder, and a page of its children",
            Body::None,
            ok(schema::<FolderOut>()),
            vec![
                ("listFilter", enumerated(&["Subfolders", "Objects", "All"]), false, "Which children to list"),
                ("maxEntries", positive(), false, "At most this many children"),
                ("fromCursor", string(), false, "Where the previous page ended"),
                ("path", enumerated(&["yes", "no"]), false, "`yes`: include the folder's path"),
                ("attrFilter", ArrayBuilder::new().items(string()).into(), false, "Only these attributes (repeatable)"),
            ],
        ),
        FolderDelete => d("Delete a folder and all it holds", Body::None, vec![(Answer::NoContent, "Deleted")], vec![]),
        FolderNameGet => d("Read a folder's name", Body::None, ok(schema::<NameOut>()), vec![]),
        FolderNamePut => d("Rename a folder", json_of(schema::<NameEnvelope>()), ok(schema::<NameOut>()), vec![]),
        SubscriptionList => {
            d("List the caller's subscriptions on the box", Body::None, ok(schema::<SubscriptionListOut>()), vec![])
        }
        SubscriptionCreate => d(
            "Subscribe to the box's changes (a webhook, or a notification channel's callbackURL)",
            json_of(schema::<SubscriptionEnvelope>()),
            created(schema::<SubscriptionOut>()),
            vec![],
        ),
        SubscriptionGet => d("Read a subscription", Body::None, ok(schema::<SubscriptionOut>()), vec![]),
        SubscriptionUpdate => d(
            "Extend a subscription, or restart it from a restart token",
            json_of(schema::<UpdateEnvelope>()),
            ok(schema::<SubscriptionOut>()),
            vec![],
        ),
        SubscriptionDelete => d("End a subscription", Body::None, vec![(Answer::NoContent, "Ended")], vec![]),
        BoxReset => d(
            "Empty the box and give it a new validity (service accounts only)",
            Body::None,
            vec![(Answer::NoContent, "Reset")],
            vec![],
        ),
        ChannelList => d(
            "List the user's notification channels",
            Body::None,
            ok(one_of(vec![schema::<ChannelListOut>(), schema::<ChannelListNcOut>()])),
            vec![(
                super::channels::LIST_FORMAT,
                string(),
                false,
                "`deployed` (the default): an array of `{notificationChannel, resourceURL}`, as deployed clients \
                 parse it; `nc`: the Notification Channel spec's `{notificationChannel: [..], resourceURL}`",
            )],
        ),
        ChannelCreate => d(
            "Create a long-polling notification channel",
            json_of(schema::<ChannelEnvelope>()),
            created(schema::<ChannelOut>()),
            vec![],
        ),
        ChannelGet => d("Read a notification channel", Body::None, ok(schema::<ChannelOut>()), vec![]),
        ChannelDelete => d("Delete a notification channel", Body::None, vec![(Answer::NoContent, "Deleted")], vec![]),
        ChannelLifetimeGet => {
            d("Read a channel's remaining lifetime", Body::None, ok(schema::<LifetimeOutEnvelope>()), vec![])
        }
        ChannelLifetimePut => d(
            "Renew a channel (credentials optional: the channel id is the capability)",
            json_of(schema::<LifetimeEnvelope>()),
            ok(schema::<LifetimeOutEnvelope>()),
            vec![],
        ),
        ChannelPoll => d(
            "Long-poll the channel: pending notification lists, or none when the poll times out",
            Body::Ignored,
            ok(schema::<NotificationListW>()),
            vec![],
        ),
    }
}

fn enumerated(values: &[&str]) -> RefOr<Schema> {
    ObjectBuilder::new().schema_type(Type::String).enum_values(Some(values.iter().copied())).into()
}

fn positive() -> RefOr<Schema> {
    ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)).into()
}

/// What each path parameter names.
fn path_parameter(name: &str) -> &'static str {
    match name {
        "store" => "The message store (one of `nms.stores`)",
        "box" => "The box: its address (`tel:+…`), or `acr:auth` for the caller's own",
        "userId" => "The user: one of its addresses, or `acr:auth` for the caller's own",
        "objectId" => "An object's id",
        "folderId" => "A folder's id",
        "flagName" => "A flag (`\\Seen`, percent-encoded as `%5CSeen`)",
        "partId" => "A payload part's id",
        "subscriptionId" => "A subscription's id",
        "channelId" => "A notification channel's id",
        _ => "",
    }
}

/// The `{name}`s of a route pattern, in order.
pub fn path_parameters(pattern: &str) -> Vec<&str> {
    pattern.split('{').skip(1).filter_map(|s| s.split_once('}').map(|(name, _)| name)).collect()
}

fn method_of(op: Operation) -> HttpMethod {
    match op.method() {
        "POST" => HttpMethod::Post,
        "PUT" => HttpMethod::Put,
        "DELETE" => HttpMethod::Delete,
        _ => HttpMethod::Get,
    }
}

fn operation(op: Operation) -> utoipa::openapi::path::Operation {
    let described = describe(op);
    let pattern = op.pattern();
    let tag = match op.family() {
        Family::Channel => "Notification channels",
        Family::Box if op.path().starts_with("/folders") => "Folders",
        Family::Box if op.path().starts_with("/subscriptions") || op == Operation::BoxReset => "Subscriptions",
        Family::Box => "Objects",
    };
    let mut b = OperationBuilder::new()
        .operation_id(Some(op.name()))
        .summary(Some(described.summary))
        .description(Some(format!("Needs the scope `{}` (or `oma_rest_nms.all_v1`).", op.scope().as_str())))
        .tag(tag);
    for name in path_parameters(&pattern) {
        let schema = match name {
            "flagName" => <FlagName as utoipa::PartialSchema>::schema(),
            _ => ObjectBuilder::new().schema_type(Type::String).min_length(Some(1)).into(),
        };
        b = b.parameter(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(Some(path_parameter(name)))
                .schema(Some(schema)),
        );
    }
    for (name, schema, required, description) in described.query {
        b = b.parameter(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Query)
                .required(if required { Required::True } else { Required::False })
                .description(Some(description))
                .schema(Some(schema)),
        );
    }
    b = match described.body {
        Body::None => b,
        Body::Json(schema, examples) => b.request_body(Some(
            RequestBodyBuilder::new()
                .required(Some(Required::True))
                .content("application/json", json(schema.clone(), examples))
                .content(super::xml::XML, xml_document(schema))
                .build(),
        )),
        Body::Deposit(schema, examples) => b.request_body(Some(
            RequestBodyBuilder::new()
                .required(Some(Required::True))
                .content("application/json", json(schema.clone(), examples))
                .content(super::xml::XML, xml_document(schema))
                .content("multipart/form-data", multipart())
                .build(),
        )),
        Body::Ignored => b.request_body(Some(
            RequestBodyBuilder::new()
                .description(Some("Ignored (read within limits.max_json_bytes)"))
                .content("application/json", json(ObjectBuilder::new().into(), vec![]))
                .build(),
        )),
    };
    let mut responses = ResponsesBuilder::new();
    for (answer, description) in described.answers {
        responses = match answer {
            Answer::Json(status, schema) => {
                let mut answer = ResponseBuilder::new()
                    .description(description)
                    .content("application/json", json((*schema).clone(), vec![]))
                    .content(super::xml::XML, xml_document(*schema));
                if status == "201" {
                    answer = answer.header("Location", Header::new(string()));
                }
                responses.response(status, answer)
            }
            Answer::NoContent => responses.response("204", ResponseBuilder::new().description(description)),
            Answer::Bytes(status) => responses.response(
                status,
                ResponseBuilder::new().description(description).content("*/*", ContentBuilder::new().build()),
            ),
        };
    }
    let error = schema::<RequestErrorOut>();
    let client_error = match described.client_errors {
        Some(other) => one_of(vec![error.clone(), other]),
        None => error.clone(),
    };
    responses = responses
        .response(
            "4XX",
            ResponseBuilder::new()
                .description("Refused: `requestError` with a `serviceException` or `policyException`")
                .content("application/json", json(client_error.clone(), vec![]))
                .content(super::xml::XML, xml_document(client_error)),
        )
        .response(
            "5XX",
            ResponseBuilder::new()
                .description("The server or a backend failed (`SVC0001`)")
                .content("application/json", json(error.clone(), vec![]))
                .content(super::xml::XML, xml_document(error)),
        );
    b = b.responses(responses.build());
    if op.credentials_optional() {
        let mut all = credentials();
        all.push(SecurityRequirement::default());
        b = b.securities(Some(all));
    }
    b.build()
}

/// A multipart deposit: the root fields, then the payload.
fn multipart() -> utoipa::openapi::content::Content {
    let binary = ObjectBuilder::new().schema_type(Type::String).content_media_type("application/octet-stream");
    let object = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("root-fields", string())
        .required("root-fields")
        .property("attachments", binary);
    ContentBuilder::new().schema(Some(object)).build()
}

/// The credentials every operation accepts (any one of them).
fn credentials() -> Vec<SecurityRequirement> {
    ["basic", "digest", "bearer"].into_iter().map(|s| SecurityRequirement::new(s, Vec::<String>::new())).collect()
}

/// The whole document, for a server whose public base URL is `public_url`.
pub fn document(public_url: &str) -> OpenApi {
    let mut doc = Schemas::openapi();
    doc.info = InfoBuilder::new()
        .title("cpm-nms: OMA REST Network Message Store (CPM binding)")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "The OMA REST NMS API as bound to CPM/RCS message storage, and the OMA Notification \
             Channel API for long polling. Every refusal is an OMA `requestError`.",
        ))
        .build();
    doc.servers = Some(vec![Server::new(public_url)]);
    let mut paths = PathsBuilder::new();
    let mut seen: Vec<String> = Vec::new();
    for op in Operation::ALL {
        let pattern = op.pattern();
        if seen.contains(&pattern) {
            continue;
        }
        let mut item: Option<PathItem> = None;
        for same in Operation::ALL.iter().filter(|o| o.pattern() == pattern) {
            let next = PathItem::new(method_of(*same), operation(*same));
            match item.as_mut() {
                Some(i) => i.merge_operations(next),
                None => item = Some(next),
            }
        }
        if let Some(item) = item {
            paths = paths.path(pattern.clone(), item);
        }
        seen.push(pattern);
    }
    for (path, summary, status, media) in SERVICE_ROUTES {
        let answer = match *media {
            "" => ResponseBuilder::new().description("Elsewhere (Location)"),
            "application/json" => ResponseBuilder::new().description("OK").content(
                *media,
                ContentBuilder::new().schema(Some(ObjectBuilder::new().schema_type(Type::Object))).build(),
            ),
            _ => ResponseBuilder::new()
                .description("OK")
                .content(*media, ContentBuilder::new().schema(Some(string())).build()),
        };
        let mut responses = ResponsesBuilder::new().response(*status, answer);
        let mut op = OperationBuilder::new().summary(Some(*summary)).tag("Service");
        match *path {
            // On the public port: a service principal's credentials, else an OMA refusal.
            "/metrics" => {
                responses = responses.response(
                    "4XX",
                    ResponseBuilder::new()
                        .description("Refused: no credentials (401), or not a service principal (403)")
                        .content("application/json", json(schema::<RequestErrorOut>(), vec![])),
                );
            }
            "/readyz" => {
                responses = responses.response(
                    "503",
                    ResponseBuilder::new().description("Not ready: the failing dependencies, or stopping").content(
                        "application/json",
                        ContentBuilder::new().schema(Some(ObjectBuilder::new().schema_type(Type::Object))).build(),
                    ),
                );
                op = op.securities(Some([SecurityRequirement::default()]));
            }
            _ => op = op.securities(Some([SecurityRequirement::default()])),
        }
        paths = paths.path(*path, PathItem::new(HttpMethod::Get, op.responses(responses)));
    }
    doc.paths = paths.build();
    doc.security = Some(credentials());
    doc.tags = Some(
        ["Objects", "Folders", "Subscriptions", "Notification channels", "Service"]
            .into_iter()
            .map(|t| TagBuilder::new().name(t).build())
            .collect(),
    );
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme("basic", SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)));
    components.add_security_scheme("digest", SecurityScheme::Http(Http::new(HttpAuthScheme::Digest)));
    // A JWT checked against the configured keys, or an opaque token the configured
    // authorization servers answer for (RFC 7662): the scheme is the same, the format not.
    let mut bearer = Http::new(HttpAuthScheme::Bearer);
    bearer.description = Some(
        "A JWT (auth.bearer) or an opaque token introspected by an authorization server (auth.bearer.introspection)."
            .into(),
    );
    components.add_security_scheme("bearer", SecurityScheme::Http(bearer));
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_parameters_come_in_order() {
        assert_eq!(path_parameters("/nms/v1/{store}/{box}/objects/{objectId}"), ["store", "box", "objectId"]);
        assert!(path_parameters("/health").is_empty());
    }
}
