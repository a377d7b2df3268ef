//! The service for each connection, from a tower service, a make-service or
//! a hyper service.

use std::future::Future;
use std::net::SocketAddr;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::service::TowerToHyperService;

use crate::serve::{BoxError, MakeConnectionService};

/// Gives the hyper service for each connection (the accept loop's view of a
/// service or make-service).
pub(super) trait Maker: Send {
    type Body: http_body::Body<Data: Send, Error: Into<BoxError>> + Send + 'static;
    type Service: Service<
            Request<Incoming>,
            Response = Response<Self::Body>,
            Error: Into<BoxError>,
            Future: Send + 'static,
        > + Send
        + 'static;

    fn make(
        &mut self,
        peer: SocketAddr,
    ) -> impl Future<Output = Result<Self::Service, BoxError>> + Send;
}

/// A tower service or make-service ([`Server::serve`]).
pub(super) struct TowerMaker<M, Marker> {
    pub(super) make: M,
    pub(super) _marker: std::marker::PhantomData<fn() -> Marker>,
}

impl<M, Marker> Maker for TowerMaker<M, Marker>
where
    M: MakeConnectionService<Marker>,
{
    type Body = M::Body;
    type Service = TowerToHyperService<M::Service>;

    async fn make(&mut self, peer: SocketAddr) -> Result<Self::Service, BoxError> {
        std::future::poll_fn(|cx| self.make.poll_ready(cx)).await?;
        let service = self.make.make_service(peer).await?;
        Ok(TowerToHyperService::new(service))
    }
}

/// A hyper service, cloned for each connection ([`Server::serve_hyper`]).
pub(super) struct HyperMaker<S>(pub(super) S);

impl<S, B> Maker for HyperMaker<S>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Body = B;
    type Service = S;

    fn make(
        &mut self,
        _: SocketAddr,
    ) -> impl Future<Output = Result<Self::Service, BoxError>> + Send {
        std::future::ready(Ok(self.0.clone()))
    }
}
