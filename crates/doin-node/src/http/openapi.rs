//! `GET /openapi.json`: an OpenAPI 3.0 document of the API, generated from the types the
//! handlers serialize and parse.
//!
//! [`ROUTES`] is the one list of the API's routes with their documentation: method, path,
//! summary, parameters, response type and error statuses. Component schemas come from the
//! handlers' own request and response types through `schemars` (OpenAPI 3 settings), and
//! query parameters from the handlers' query structs, so a field added to a response shows
//! up in the document without anyone editing it. A test checks that every route the router
//! registers is in [`ROUTES`] and that every entry of [`ROUTES`] is served, so a route
//! cannot be added without its documentation.
//!
//! The document is built once per process and kept (it depends on nothing at run time but
//! the crate version).

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use schemars::gen::{SchemaGenerator, SchemaSettings};
use schemars::schema::{Schema, SchemaObject};
use schemars::JsonSchema;
use serde_json::{json, Map, Value};

use super::{
    account, chain, chain_info, coin, error, inference, market, optimae, params, peers, stats,
    status, tx,
};

/// Produces the schema of one type, adding what it references to the generator.
pub(super) type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// A `$ref` to `T`'s component schema.
fn schema<T: JsonSchema>(gen: &mut SchemaGenerator) -> Schema {
    gen.subschema_for::<T>()
}

/// `T`'s schema inline (for query structs, whose properties become parameters).
fn inline<T: JsonSchema>(gen: &mut SchemaGenerator) -> Schema {
    T::json_schema(gen)
}

/// An HTTP method the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Method {
    Get,
    Post,
}

impl Method {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Post => "post",
        }
    }
}

/// Where a route's query parameters are described.
#[derive(Clone, Copy)]
pub(super) enum QueryDoc {
    None,
    /// The handler's query struct: each property is a parameter.
    Struct(SchemaFn),
    /// Listed by hand (name, description, JSON type) for a handler whose query type has
    /// no schema.
    Manual(&'static [(&'static str, &'static str, &'static str)]),
}

/// What a successful response (or a request body) carries.
#[derive(Clone, Copy)]
pub(super) enum Content {
    /// `application/json` with this schema.
    Json(SchemaFn),
    /// Another media type (HTML, CSS, CSV, an event stream, Prometheus text).
    Other {
        media_type: &'static str,
        description: &'static str,
    },
    /// Raw bytes, `application/octet-stream` (parameter blobs).
    Binary { description: &'static str },
}

/// One route's documentation.
#[derive(Clone, Copy)]
pub(super) struct RouteDoc {
    pub(super) method: Method,
    /// The router's path, whose `{name}` segments are also OpenAPI's path templates.
    pub(super) path: &'static str,
    pub(super) summary: &'static str,
    /// Path parameters: name and description (all strings).
    pub(super) path_params: &'static [(&'static str, &'static str)],
    pub(super) query: QueryDoc,
    pub(super) request: Option<Content>,
    pub(super) response: Content,
    /// Whether the route also answers `201 Created` (with the same content as 200).
    pub(super) created: bool,
    /// Error statuses besides 500 (which any route may answer).
    pub(super) errors: &'static [u16],
}

impl std::fmt::Debug for RouteDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method.as_str().to_uppercase(), self.path)
    }
}

const fn get(
    path: &'static str,
    summary: &'static str,
    query: QueryDoc,
    response: Content,
    errors: &'static [u16],
) -> RouteDoc {
    RouteDoc {
        method: Method::Get,
        path,
        summary,
        path_params: &[],
        query,
        request: None,
        response,
        created: false,
        errors,
    }
}

const fn with_path(mut r: RouteDoc, params: &'static [(&'static str, &'static str)]) -> RouteDoc {
    r.path_params = params;
    r
}

const NO_QUERY: QueryDoc = QueryDoc::None;
const ID_HEIGHT_HASH: &[(&str, &str)] = &[(
    "id",
    "a height (decimal), a block hash (64 hex digits) or `latest`",
)];
const ID_HEX: &[(&str, &str)] = &[("id", "64 hex digits (an optional `0x` prefix is accepted)")];
const ID_DOMAIN: &[(&str, &str)] = &[("id", "a domain id")];

const HTML: Content = Content::Other {
    media_type: "text/html; charset=utf-8",
    description: "the dashboard page (embedded in the binary)",
};

/// Every route of the API. Keep it in step with [`super::router`]: a test compares them.
pub(super) const ROUTES: &[RouteDoc] = &[
    get(
        "/health",
        "Liveness",
        NO_QUERY,
        Content::Json(schema::<status::Health>),
        &[],
    ),
    get(
        "/status",
        "The node and its chain at a glance (memory only; cheap to poll)",
        NO_QUERY,
        Content::Json(schema::<status::Status<'static>>),
        &[],
    ),
    get(
        "/domains",
        "Every domain of the chain: parameters, champion, this node's role",
        NO_QUERY,
        Content::Json(schema::<status::Domains<'static>>),
        &[],
    ),
    with_path(
        get(
            "/domains/{id}/history",
            "A domain's verdicts over time (its champions by default)",
            QueryDoc::Manual(&[
                ("limit", "entries per page", "integer"),
                (
                    "before",
                    "only heights below this one (paging backwards)",
                    "integer",
                ),
                ("verdicts", "`accepted` (default) or `all`", "string"),
            ]),
            Content::Json(schema::<Value>),
            &[400, 404],
        ),
        ID_DOMAIN,
    ),
    get(
        "/chain/params",
        "The chain parameters",
        NO_QUERY,
        Content::Json(schema::<doin_core::params::ChainParams>),
        &[],
    ),
    get(
        "/chain/blocks",
        "Headers of a height range (default: the last 20; at most 100)",
        QueryDoc::Struct(inline::<chain::BlocksQuery>),
        Content::Json(schema::<chain::BlocksPage>),
        &[400],
    ),
    with_path(
        get(
            "/chain/block/{id}",
            "One full block with its receipt",
            NO_QUERY,
            Content::Json(schema::<chain::FullBlock<'static>>),
            &[400, 404],
        ),
        ID_HEIGHT_HASH,
    ),
    get(
        "/chain/finality",
        "The finalized height and hash",
        NO_QUERY,
        Content::Json(schema::<chain_info::FinalityView>),
        &[],
    ),
    get(
        "/chain/difficulty",
        "Difficulty threshold, block-time EMA and recent blocks' work (at most 100)",
        QueryDoc::Struct(inline::<chain_info::DifficultyQuery>),
        Content::Json(schema::<chain_info::DifficultyView>),
        &[400],
    ),
    get(
        "/chain/rewards",
        "Minted coins and payouts by block (default: the last 20; at most 100)",
        QueryDoc::Struct(inline::<chain_info::RewardsQuery>),
        Content::Json(schema::<chain_info::RewardsPage>),
        &[400],
    ),
    with_path(
        get(
            "/tx/{id}",
            "A confirmed or pending transaction",
            NO_QUERY,
            Content::Json(schema::<tx::TxLookup<'static>>),
            &[400, 404],
        ),
        ID_HEX,
    ),
    RouteDoc {
        method: Method::Post,
        path: "/tx",
        summary: "Submit a signed transaction",
        path_params: &[],
        query: NO_QUERY,
        request: Some(Content::Json(schema::<doin_core::tx::SignedTx>)),
        response: Content::Json(schema::<tx::Accepted>),
        created: false,
        errors: &[400, 409, 413, 422],
    },
    get(
        "/mempool",
        "Pending transactions, highest tip first (limit at most 100)",
        QueryDoc::Struct(inline::<market::MempoolQuery>),
        Content::Json(schema::<market::MempoolPage>),
        &[400],
    ),
    get(
        "/fees",
        "The fee market: base fee, next block's rule, suggested bid, recent base fees",
        QueryDoc::Struct(inline::<market::FeesQuery>),
        Content::Json(schema::<market::FeesView>),
        &[400],
    ),
    with_path(
        get(
            "/account/{id}",
            "Balance, nonce, reputation, evaluator bonds, recent transactions (limit at most 100)",
            QueryDoc::Struct(inline::<account::AccountQuery>),
            Content::Json(schema::<account::AccountView<'static>>),
            &[400],
        ),
        ID_HEX,
    ),
    get(
        "/optimae",
        "Optimae between commit and verdict, with their quorum's votes so far (limit at most 100)",
        QueryDoc::Struct(inline::<optimae::OptimaeQuery>),
        Content::Json(schema::<optimae::OptimaeList>),
        &[400, 404],
    ),
    with_path(
        get(
            "/optimae/{id}",
            "One optimae by commitment: pending (from the state) or decided (from its receipt)",
            NO_QUERY,
            Content::Json(schema::<optimae::OptimaeView>),
            &[400, 404],
        ),
        ID_HEX,
    ),
    get(
        "/reputation",
        "Accounts by reputation, with quorum eligibility (limit at most 100)",
        QueryDoc::Struct(inline::<optimae::ReputationQuery>),
        Content::Json(schema::<optimae::ReputationPage>),
        &[400],
    ),
    RouteDoc {
        method: Method::Post,
        path: "/params",
        summary: "Store a parameter blob (model weights) under its hash, for a reveal to name \
            (201 when written, 200 when already held)",
        path_params: &[],
        query: QueryDoc::Struct(inline::<params::UploadQuery>),
        request: Some(Content::Binary {
            description: "the raw parameter bytes, at most the domain's \
                `limits.max_params_bytes` (and 256 MiB)",
        }),
        response: Content::Json(schema::<params::Stored>),
        created: true,
        errors: &[400, 408, 413, 503, 507],
    },
    with_path(
        get(
            "/params/{id}",
            "The parameter blob with this hash (raw bytes), e.g. a champion's model",
            NO_QUERY,
            Content::Binary {
                description: "the blob's bytes; their `params_hash` is the id",
            },
            &[400, 404, 503],
        ),
        &[(
            "id",
            "the params hash: 64 hex digits (an optional `0x` prefix is accepted)",
        )],
    ),
    get(
        "/peers",
        "Connected peers with address, gossip score and domains",
        NO_QUERY,
        Content::Json(schema::<peers::PeersView>),
        &[],
    ),
    get(
        "/coin",
        "Supply, issuance, burns, cap, block reward and halving schedule",
        NO_QUERY,
        Content::Json(schema::<coin::CoinView>),
        &[],
    ),
    get(
        "/stats",
        "Per domain: verdict counts, best performance, time to target",
        NO_QUERY,
        Content::Json(schema::<stats::StatsView>),
        &[],
    ),
    get(
        "/stats/export.csv",
        "Verdicts of a height range as CSV (default: the last 1,000 blocks; at most 10,000)",
        QueryDoc::Struct(inline::<stats::ExportQuery>),
        Content::Other {
            media_type: "text/csv; charset=utf-8",
            description: "header row `height,timestamp_ms,domain,optimae,optimizer,claim,\
                median,verdict,credit,work,burned,votes`, then one row per verdict, oldest \
                first; a `Link: <...>; rel=\"next\"` header names the next range",
        },
        &[400, 404],
    ),
    get(
        "/inference",
        "The domains this node serves: price, provider, champion, input shape",
        NO_QUERY,
        Content::Json(schema::<inference::OffersView<'static>>),
        &[],
    ),
    RouteDoc {
        method: Method::Post,
        path: "/inference",
        summary: "A prediction from a domain's champion, paid with a channel voucher",
        path_params: &[],
        query: NO_QUERY,
        request: Some(Content::Json(schema::<inference::InferRequest>)),
        response: Content::Json(schema::<crate::inference::Answer>),
        created: false,
        errors: &[400, 402, 404, 413, 422, 503],
    },
    with_path(
        get(
            "/channel/{id}",
            "A payment channel on chain, with this node's best voucher as provider",
            NO_QUERY,
            Content::Json(schema::<inference::ChannelView<'static>>),
            &[400, 404],
        ),
        ID_HEX,
    ),
    get(
        "/channels",
        "The channels of an account (default: this node; limit at most 100)",
        QueryDoc::Struct(inline::<inference::ChannelsQuery>),
        Content::Json(schema::<inference::ChannelList<'static>>),
        &[400],
    ),
    get(
        "/metrics",
        "Prometheus metrics (OpenMetrics or the text format, chosen by `Accept`)",
        NO_QUERY,
        Content::Other {
            media_type: "text/plain; version=0.0.4",
            description: "metrics with a `doin_` prefix in base units; \
                `Accept: application/openmetrics-text` gets OpenMetrics",
        },
        &[],
    ),
    get(
        "/events",
        "Server-sent events: `status`, then `block` and `status` for each block",
        NO_QUERY,
        Content::Other {
            media_type: "text/event-stream",
            description: "a stream of server-sent events; see docs/api.md for the event types",
        },
        &[],
    ),
    get("/dashboard", "The live dashboard", NO_QUERY, HTML, &[]),
    get("/dashboard/", "The live dashboard", NO_QUERY, HTML, &[]),
    get(
        "/dashboard/style.css",
        "The dashboard's style sheet",
        NO_QUERY,
        Content::Other {
            media_type: "text/css; charset=utf-8",
            description: "embedded style sheet",
        },
        &[],
    ),
    get(
        "/dashboard/app.js",
        "The dashboard's script",
        NO_QUERY,
        Content::Other {
            media_type: "text/javascript; charset=utf-8",
            description: "embedded script",
        },
        &[],
    ),
    get(
        "/openapi.json",
        "This document",
        NO_QUERY,
        Content::Other {
            media_type: "application/json",
            description: "an OpenAPI 3.0 document",
        },
        &[],
    ),
];

fn status_text(code: u16) -> &'static str {
    match code {
        400 => "malformed id, query or body, or a limit over its maximum",
        402 => "payment required: the body also says how to pay",
        404 => "no such thing here",
        408 => "the request body did not arrive in time",
        409 => "conflict: already pending",
        413 => "request body over the limit",
        422 => "well-formed but refused",
        503 => "not available yet, or busy: retry later",
        507 => "the node's space for such uploads is full: retry later",
        _ => "internal error; details are in the node's log",
    }
}

/// Applies the OpenAPI 3 settings' visitors (no `$ref` siblings, no boolean schemas, one
/// example) to a schema generated outside `root_schema_for`.
fn visit(gen: &mut SchemaGenerator, schema: &mut Schema) {
    for visitor in gen.visitors_mut() {
        visitor.visit_schema(schema);
    }
}

/// Rewrites the JSON Schema constructs OpenAPI 3.0 does not have: tuple `items` arrays
/// (schemars' form for Rust tuples) become one `oneOf` item schema with the length bounds
/// kept, and `const` becomes a one-value `enum`.
fn to_openapi30(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Array(items)) = map.get_mut("items") {
                let items = std::mem::take(items);
                map.insert("items".into(), json!({ "oneOf": items }));
            }
            map.remove("additionalItems");
            if let Some(c) = map.remove("const") {
                map.insert("enum".into(), json!([c]));
            }
            for v in map.values_mut() {
                to_openapi30(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(to_openapi30),
        _ => {}
    }
}

fn to_value(gen: &mut SchemaGenerator, mut schema: Schema) -> Value {
    visit(gen, &mut schema);
    let mut v = serde_json::to_value(&schema).unwrap_or(Value::Null);
    to_openapi30(&mut v);
    v
}

/// The query struct's properties as OpenAPI parameters.
fn query_params(gen: &mut SchemaGenerator, f: SchemaFn) -> Vec<Value> {
    let obj: SchemaObject = f(gen).into_object();
    let Some(object) = obj.object else {
        return Vec::new();
    };
    object
        .properties
        .into_iter()
        .map(|(name, prop)| {
            let mut prop = prop.into_object();
            let description = prop
                .metadata
                .as_mut()
                .and_then(|m| m.description.take())
                .unwrap_or_default();
            let required = object.required.contains(&name);
            let schema = to_value(gen, Schema::Object(prop));
            let mut p =
                json!({"name": name, "in": "query", "required": required, "schema": schema});
            if !description.is_empty() {
                p["description"] = Value::String(description);
            }
            p
        })
        .collect()
}

fn operation(gen: &mut SchemaGenerator, r: &RouteDoc) -> Value {
    let mut params: Vec<Value> = r
        .path_params
        .iter()
        .map(|(name, description)| {
            json!({"name": name, "in": "path", "required": true, "description": description,
                   "schema": {"type": "string"}})
        })
        .collect();
    match r.query {
        QueryDoc::None => {}
        QueryDoc::Struct(f) => params.extend(query_params(gen, f)),
        QueryDoc::Manual(list) => params.extend(list.iter().map(|(name, description, ty)| {
            json!({"name": name, "in": "query", "required": false, "description": description,
                   "schema": {"type": ty}})
        })),
    }
    let ok = match r.response {
        Content::Json(f) => {
            let s = f(gen);
            json!({"description": "OK", "content": {"application/json": {"schema": to_value(gen, s)}}})
        }
        other => body(gen, other),
    };
    let mut responses = Map::new();
    if r.created {
        let mut created = ok.clone();
        created["description"] = json!("Created");
        responses.insert("201".into(), created);
    }
    responses.insert("200".into(), ok);
    for code in r.errors.iter().copied().chain([500]) {
        responses.insert(
            code.to_string(),
            json!({"description": status_text(code),
                   "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ApiError"}}}}),
        );
    }
    let mut op = json!({
        "summary": r.summary,
        "operationId": operation_id(r),
        "responses": responses,
    });
    if !params.is_empty() {
        op["parameters"] = Value::Array(params);
    }
    if let Some(request) = r.request {
        let mut b = body(gen, request);
        b["required"] = json!(true);
        op["requestBody"] = b;
    }
    op
}

/// A request body or response of `content`: `{"description", "content": {media: {schema}}}`.
fn body(gen: &mut SchemaGenerator, content: Content) -> Value {
    match content {
        Content::Json(f) => {
            let s = f(gen);
            json!({"content": {"application/json": {"schema": to_value(gen, s)}}})
        }
        Content::Other {
            media_type,
            description,
        } => {
            json!({"description": description, "content": {media_type: {"schema": {"type": "string"}}}})
        }
        Content::Binary { description } => json!({"description": description,
            "content": {"application/octet-stream":
                {"schema": {"type": "string", "format": "binary"}}}}),
    }
}

/// A unique id from method and path: `get_chain_block_id`.
fn operation_id(r: &RouteDoc) -> String {
    let mut id = String::from(r.method.as_str());
    let mut last_sep = false;
    for c in r.path.chars() {
        if c.is_ascii_alphanumeric() {
            id.push(c);
            last_sep = false;
        } else if !last_sep {
            id.push('_');
            last_sep = true;
        }
    }
    let trimmed = id.trim_end_matches('_').len();
    id.truncate(trimmed);
    if r.path.ends_with('/') {
        id.push_str("_index");
    }
    id
}

/// Builds the document from [`ROUTES`].
pub(super) fn document() -> Value {
    let mut gen: SchemaGenerator = SchemaSettings::openapi3().into_generator();
    let _ = gen.subschema_for::<error::ErrorBody<'static>>();
    let mut paths = Map::new();
    for r in ROUTES {
        let op = operation(&mut gen, r);
        let entry = paths.entry(r.path.to_owned()).or_insert_with(|| json!({}));
        entry[r.method.as_str()] = op;
    }
    let definitions = gen.take_definitions();
    let mut schemas = Map::new();
    for (name, schema) in definitions {
        let v = to_value(&mut gen, schema);
        schemas.insert(name, v);
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "DOIN node API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The HTTP API of a DOIN node: chain, mempool and fees, optimae, \
                reputation, coin, stats, paid inference. Amounts are integers in base units \
                (1 DOIN = 10^8); hashes and accounts are 64 lowercase hex digits. Every \
                error is `{\"error\": code, \"message\": text}`. See docs/api.md.",
            "license": {"name": "see the repository"},
        },
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

/// The serialized document, built on first use.
fn document_bytes() -> &'static [u8] {
    static DOC: OnceLock<Vec<u8>> = OnceLock::new();
    DOC.get_or_init(|| serde_json::to_vec(&document()).unwrap_or_default())
}

pub(super) async fn openapi() -> Response {
    let mut resp = Response::new(Body::from(document_bytes()));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
