//! A hub running in process, its routes mounted in an actix-web test service as an application
//! embedding it mounts them, so that a target sends the requests an HTTP client would send and
//! gets the hub's real answers without sockets.
//!
//! libFuzzer calls a target on one thread, so the harness lives in a thread-local with the
//! actix system (a single-threaded runtime) that every call blocks on.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use actix_web::http::header::HeaderMap;
use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use actix_web::web::{self, Bytes};
use actix_web::App;
use quicksilver::config::Config;
use quicksilver::Hub;

/// What the hub answered.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body, when it was asked for (never for an event stream, which does not end).
    pub body: Option<Bytes>,
}

/// Sends one request to the test service, reading the body or not.
type Call = Box<dyn Fn(TestRequest, bool) -> Pin<Box<dyn Future<Output = Answer>>>>;

/// A hub behind an in-process test service.
pub struct Harness {
    system: actix_web::rt::SystemRunner,
    call: Call,
}

impl Harness {
    /// Starts a hub with these settings (names and values as `Config::builder` takes them).
    ///
    /// The harness is leaked: it lives as long as the fuzzing process, and dropping it at exit
    /// would run actix's destructors after the thread-locals they use are gone.
    pub fn start(settings: &[(&str, &str)]) -> &'static Self {
        let system = actix_web::rt::System::new();
        let call = system.block_on(async {
            let config = settings
                .iter()
                .fold(Config::builder(), |builder, (key, value)| builder.set(key, value))
                .build()
                .expect("the harness's settings are valid");
            let hub = Hub::start(config).expect("the in-memory hub starts");
            let app = test::init_service(
                App::new().configure(hub.configure()).app_data(web::Data::new(hub.clone())),
            )
            .await;
            let app = Rc::new(app);
            Box::new(move |req: TestRequest, read_body: bool| {
                let app = app.clone();
                Box::pin(async move {
                    let response = test::call_service(&*app, req.to_request()).await;
                    let status = response.status();
                    let headers = response.headers().clone();
                    let body = if read_body { Some(test::read_body(response).await) } else { None };
                    Answer { status, headers, body }
                }) as Pin<Box<dyn Future<Output = Answer>>>
            }) as Call
        });
        Box::leak(Box::new(Self { system, call }))
    }

    /// Sends `req` and waits for the answer; `read_body` reads the whole body.
    pub fn call(&self, req: TestRequest, read_body: bool) -> Answer {
        self.system.block_on((self.call)(req, read_body))
    }
}
