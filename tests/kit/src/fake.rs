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

/// A TCP proxy on loopback in front of a service (a database), that a test can take
/// down — every open connection cut, new ones refused — and bring back up.
pub struct TcpProxy {
    /// `127.0.0.1:<port>`, to point the client at.
    pub addr: std::net::SocketAddr,
    up: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Forward connections to `target` (e.g. `127.0.0.1:5432`).
    pub async fn start(target: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let (up, _) = tokio::sync::watch::channel(true);
        let up = std::sync::Arc::new(up);
        let state = up.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut watch = state.subscribe();
                if !*watch.borrow() {
                    drop(client); // down: refuse
                    continue;
                }
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    // Copy both ways until either side closes or the proxy goes down.
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = watch.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Self { addr, up, task }
    }

    /// Cut every connection and refuse new ones.
    pub fn down(&self) {
        self.up.send_replace(false);
    }

    /// Accept connections again.
    pub fn up(&self) {
        self.up.send_replace(true);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
