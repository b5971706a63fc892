//! Loopback HTTP servers standing in for providers (token endpoints, list APIs, receivers).

/// Serve `app` on a free loopback port until the test's runtime ends; returns its base URL
/// (`http://127.0.0.1:<port>`).
pub async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding 127.0.0.1:0");
    let base = format!("http://{}", listener.local_addr().expect("local address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}
