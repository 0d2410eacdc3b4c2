//! Garden's route table (`routes/routes.go`): names, methods and paths,
//! for matching requests on the server and building them in the client.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// One Garden route. The names are Garden's route names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Route {
    Ping,
    Capacity,
    List,
    Create,
    Info,
    BulkInfo,
    BulkMetrics,
    Destroy,
    Stop,
    StreamIn,
    StreamOut,
    CurrentBandwidthLimits,
    CurrentCpuLimits,
    CurrentDiskLimits,
    CurrentMemoryLimits,
    NetIn,
    NetOut,
    BulkNetOut,
    Stdout,
    Stderr,
    Run,
    Attach,
    SetGraceTime,
    Properties,
    Property,
    SetProperty,
    RemoveProperty,
    Metrics,
}

/// A path segment in the table: a literal or a parameter.
#[derive(Clone, Copy)]
enum Seg {
    Lit(&'static str),
    Handle,
    Pid,
    StreamId,
    Key,
}

use Seg::{Handle, Key, Lit, Pid, StreamId};

/// Garden's table, in Garden's order: (route, name, method, path).
const TABLE: &[(Route, &str, &str, &[Seg])] = &[
    (Route::Ping, "Ping", "GET", &[Lit("ping")]),
    (Route::Capacity, "Capacity", "GET", &[Lit("capacity")]),
    (Route::List, "List", "GET", &[Lit("containers")]),
    (Route::Create, "Create", "POST", &[Lit("containers")]),
    (
        Route::Info,
        "Info",
        "GET",
        &[Lit("containers"), Handle, Lit("info")],
    ),
    (
        Route::BulkInfo,
        "BulkInfo",
        "GET",
        &[Lit("containers"), Lit("bulk_info")],
    ),
    (
        Route::BulkMetrics,
        "BulkMetrics",
        "GET",
        &[Lit("containers"), Lit("bulk_metrics")],
    ),
    (
        Route::Destroy,
        "Destroy",
        "DELETE",
        &[Lit("containers"), Handle],
    ),
    (
        Route::Stop,
        "Stop",
        "PUT",
        &[Lit("containers"), Handle, Lit("stop")],
    ),
    (
        Route::StreamIn,
        "StreamIn",
        "PUT",
        &[Lit("containers"), Handle, Lit("files")],
    ),
    (
        Route::StreamOut,
        "StreamOut",
        "GET",
        &[Lit("containers"), Handle, Lit("files")],
    ),
    (
        Route::CurrentBandwidthLimits,
        "CurrentBandwidthLimits",
        "GET",
        &[Lit("containers"), Handle, Lit("limits"), Lit("bandwidth")],
    ),
    (
        Route::CurrentCpuLimits,
        "CurrentCPULimits",
        "GET",
        &[Lit("containers"), Handle, Lit("limits"), Lit("cpu")],
    ),
    (
        Route::CurrentDiskLimits,
        "CurrentDiskLimits",
        "GET",
        &[Lit("containers"), Handle, Lit("limits"), Lit("disk")],
    ),
    (
        Route::CurrentMemoryLimits,
        "CurrentMemoryLimits",
        "GET",
        &[Lit("containers"), Handle, Lit("limits"), Lit("memory")],
    ),
    (
        Route::NetIn,
        "NetIn",
        "POST",
        &[Lit("containers"), Handle, Lit("net"), Lit("in")],
    ),
    (
        Route::NetOut,
        "NetOut",
        "POST",
        &[Lit("containers"), Handle, Lit("net"), Lit("out")],
    ),
    (
        Route::BulkNetOut,
        "BulkNetOut",
        "POST",
        &[
            Lit("containers"),
            Handle,
            Lit("net"),
            Lit("out"),
            Lit("bulk"),
        ],
    ),
    (
        Route::Stdout,
        "Stdout",
        "GET",
        &[
            Lit("containers"),
            Handle,
            Lit("processes"),
            Pid,
            Lit("attaches"),
            StreamId,
            Lit("stdout"),
        ],
    ),
    (
        Route::Stderr,
        "Stderr",
        "GET",
        &[
            Lit("containers"),
            Handle,
            Lit("processes"),
            Pid,
            Lit("attaches"),
            StreamId,
            Lit("stderr"),
        ],
    ),
    (
        Route::Run,
        "Run",
        "POST",
        &[Lit("containers"), Handle, Lit("processes")],
    ),
    (
        Route::Attach,
        "Attach",
        "GET",
        &[Lit("containers"), Handle, Lit("processes"), Pid],
    ),
    (
        Route::SetGraceTime,
        "SetGraceTime",
        "PUT",
        &[Lit("containers"), Handle, Lit("grace_time")],
    ),
    (
        Route::Properties,
        "Properties",
        "GET",
        &[Lit("containers"), Handle, Lit("properties")],
    ),
    (
        Route::Property,
        "Property",
        "GET",
        &[Lit("containers"), Handle, Lit("properties"), Key],
    ),
    (
        Route::SetProperty,
        "SetProperty",
        "PUT",
        &[Lit("containers"), Handle, Lit("properties"), Key],
    ),
    (
        Route::RemoveProperty,
        "RemoveProperty",
        "DELETE",
        &[Lit("containers"), Handle, Lit("properties"), Key],
    ),
    (
        Route::Metrics,
        "Metrics",
        "GET",
        &[Lit("containers"), Handle, Lit("metrics")],
    ),
];

/// The parameters of a route's path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params {
    /// `:handle`.
    pub handle: String,
    /// `:pid`.
    pub process_id: String,
    /// `:streamid`.
    pub stream_id: String,
    /// `:key`.
    pub key: String,
}

/// Why a request matches no route.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// No route has this path.
    #[error("no route for {method} {path}")]
    NotFound {
        /// The request method.
        method: String,
        /// The request path.
        path: String,
    },
    /// Routes have this path, with other methods.
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed {
        /// The request method.
        method: String,
        /// The request path.
        path: String,
    },
    /// A path segment is not valid percent-encoded UTF-8.
    #[error("path segment {0:?} is not valid percent-encoded UTF-8")]
    BadEncoding(String),
}

impl Route {
    fn entry(self) -> &'static (Route, &'static str, &'static str, &'static [Seg]) {
        TABLE
            .iter()
            .find(|entry| entry.0 == self)
            .unwrap_or(&TABLE[0])
    }

    /// Garden's name for the route (`Ping`, `CurrentCPULimits`, ...).
    pub fn name(self) -> &'static str {
        self.entry().1
    }

    /// The HTTP method.
    pub fn method(self) -> &'static str {
        self.entry().2
    }

    /// Whether the route concerns one container (and so holds its grace timer).
    pub fn has_handle(self) -> bool {
        self.entry().3.iter().any(|seg| matches!(seg, Handle))
    }

    /// The path with `params` filled in, each percent-encoded.
    pub fn path(self, params: &Params) -> String {
        let mut path = String::new();
        for seg in self.entry().3 {
            path.push('/');
            let value = match seg {
                Lit(text) => text,
                Handle => params.handle.as_str(),
                Pid => params.process_id.as_str(),
                StreamId => params.stream_id.as_str(),
                Key => params.key.as_str(),
            };
            path.extend(utf8_percent_encode(value, SEGMENT));
        }
        path
    }

    /// Finds the route of `method` and `path` (percent-decoding parameters).
    pub fn match_request(method: &str, path: &str) -> Result<(Route, Params), RouteError> {
        let raw: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
        let mut path_matched = false;
        for (route, _, route_method, segs) in TABLE {
            if segs.len() != raw.len() {
                continue;
            }
            let Some(params) = match_segments(segs, &raw)? else {
                continue;
            };
            if method == *route_method {
                return Ok((*route, params));
            }
            path_matched = true;
        }
        let (method, path) = (method.to_owned(), path.to_owned());
        Err(if path_matched {
            RouteError::MethodNotAllowed { method, path }
        } else {
            RouteError::NotFound { method, path }
        })
    }
}

/// Characters escaped in a path segment: all but unreserved ones.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn match_segments(segs: &[Seg], raw: &[&str]) -> Result<Option<Params>, RouteError> {
    let mut params = Params::default();
    for (seg, raw) in segs.iter().zip(raw) {
        let slot = match seg {
            Lit(text) if text == raw => continue,
            Lit(_) => return Ok(None),
            Handle => &mut params.handle,
            Pid => &mut params.process_id,
            StreamId => &mut params.stream_id,
            Key => &mut params.key,
        };
        if raw.is_empty() {
            return Ok(None);
        }
        *slot = percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| RouteError::BadEncoding((*raw).to_owned()))?
            .into_owned();
    }
    Ok(Some(params))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_round_trips_through_its_path() {
        let params = Params {
            handle: "app 1/x".into(),
            process_id: "p%1".into(),
            stream_id: "7".into(),
            key: "executor:owner".into(),
        };
        for (route, ..) in TABLE {
            let path = route.path(&params);
            let (matched, got) = Route::match_request(route.method(), &path).expect("matches");
            assert_eq!(matched, *route, "{path}");
            if route.has_handle() {
                assert_eq!(got.handle, params.handle);
            }
        }
    }

    #[test]
    fn garden_paths() {
        let params = Params {
            handle: "h".into(),
            process_id: "p".into(),
            stream_id: "3".into(),
            ..Params::default()
        };
        assert_eq!(
            Route::Stdout.path(&params),
            "/containers/h/processes/p/attaches/3/stdout"
        );
        assert_eq!(Route::CurrentCpuLimits.name(), "CurrentCPULimits");
        assert_eq!(
            Route::match_request("GET", "/containers/bulk_info")
                .expect("matches")
                .0,
            Route::BulkInfo
        );
        assert_eq!(
            Route::match_request("DELETE", "/containers/bulk_info")
                .expect("matches")
                .0,
            Route::Destroy
        );
        assert!(matches!(
            Route::match_request("GET", "/nope"),
            Err(RouteError::NotFound { .. })
        ));
        assert!(matches!(
            Route::match_request("POST", "/ping"),
            Err(RouteError::MethodNotAllowed { .. })
        ));
        assert!(matches!(
            Route::match_request("GET", "/containers//info"),
            Err(RouteError::NotFound { .. })
        ));
        assert!(matches!(
            Route::match_request("GET", "/containers/%ff/info"),
            Err(RouteError::BadEncoding(_))
        ));
    }
}
