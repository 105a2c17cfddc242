//! The fake agents: one HTTP server on 127.0.0.1:0, agent `a` at `/a`, answering from the
//! world's truth under its lock.

use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rand::RngExt;

use crate::world::{HTTP_TIMEOUT, Mode, Shared, TERMINATE_TIMEOUT, format_time};

/// Serves the agents until the process ends; returns the `--agent-url` template.
pub fn start(world: Shared) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the agents");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("address");
    let app = Router::new()
        .route("/{agent}/api/executions/running", get(running))
        .route("/{agent}/api/executions/{id}/terminate", post(terminate))
        .route("/{agent}/api/executions/{id}/last-error", get(last_error))
        .with_state(world);
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            axum::serve(listener, app).await.expect("serve the agents");
        });
    });
    format!("http://{addr}/{{agent}}")
}

fn lists(world: &Shared, agent: &str) -> Option<(Mode, String)> {
    let mut world = world.lock().unwrap();
    let mode = world.agents.get(agent)?.mode;
    if mode == Mode::Up {
        world.on_get(agent);
    }
    let (running, pending, recent) = world.lists(agent);
    let executions: Vec<_> = running
        .iter()
        .map(|id| {
            serde_json::json!({
                "execution_id": id,
                "started_at": format_time(world.execs[id].started),
                "metadata": {"source": "soak"},
            })
        })
        .collect();
    let mut body = serde_json::json!({ "executions": executions });
    if world.agents[agent].new_image {
        body["pending_ids"] = serde_json::json!(pending);
        body["recently_completed_ids"] = serde_json::json!(recent);
    }
    Some((mode, body.to_string()))
}

async fn running(State(world): State<Shared>, Path(agent): Path<String>) -> Response {
    let Some((mode, body)) = lists(&world, &agent) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match mode {
        Mode::Up => ([("content-type", "application/json")], body).into_response(),
        Mode::Restarting => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        Mode::Refusing => (StatusCode::BAD_GATEWAY, "connect: connection refused").into_response(),
        Mode::Error500 => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Mode::Stalling => {
            tokio::time::sleep(HTTP_TIMEOUT + Duration::from_millis(500)).await;
            ([("content-type", "application/json")], body).into_response()
        }
    }
}

async fn terminate(
    State(world): State<Shared>,
    Path((agent, id)): Path<(String, String)>,
) -> Response {
    let (answer, delay) = {
        let mut world = world.lock().unwrap();
        let Some(mode) = world.agents.get(&agent).map(|a| a.mode) else {
            return StatusCode::NOT_FOUND.into_response();
        };
        match mode {
            Mode::Up => {
                let delay = Duration::from_millis(world.rng.random_range(50..800));
                let answer = if world.on_terminate(&agent, &id) {
                    StatusCode::OK
                } else {
                    StatusCode::NOT_FOUND
                };
                (answer, delay)
            }
            // Past the tool's --terminate-timeout; the work goes on.
            Mode::Stalling => {
                world.effects.terminates.insert(id);
                (
                    StatusCode::GATEWAY_TIMEOUT,
                    TERMINATE_TIMEOUT + Duration::from_secs(1),
                )
            }
            _ => {
                world.effects.terminates.insert(id);
                (StatusCode::SERVICE_UNAVAILABLE, Duration::ZERO)
            }
        }
    };
    // The process is gone at once; the agent answers after its SIGINT has been handled.
    tokio::time::sleep(delay).await;
    match answer {
        StatusCode::OK => (
            [("content-type", "application/json")],
            "{\"status\":\"terminated\"}",
        )
            .into_response(),
        StatusCode::NOT_FOUND => (answer, "{\"detail\":\"not found\"}").into_response(),
        _ => answer.into_response(),
    }
}

async fn last_error() -> Response {
    (StatusCode::NOT_FOUND, "{\"detail\":\"no error recorded\"}").into_response()
}
