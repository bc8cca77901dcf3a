//! `ground serve`: CADU streams from any number of stations over TCP at once, each decoded and
//! verified on its own, into one archive; acknowledgements back up each station's socket as
//! protected telecommand frames; and the HTTP API. A station that sends garbage, stalls, or drops
//! mid-CADU affects only its own connection.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use kestrel_link::decoder::DecodeStats;
use kestrel_link::product::{Kind, Product};
use kestrel_link::profile::LinkProfile;
use kestrel_link::security::SecurityAssociation;
use kestrel_link::uplink::{Telecommand, UPLOAD_SEGMENT_LEN, UplinkSender};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::archive::{Archive, ArchiveError, AuditEntry, TimelineQuery};
use crate::ingest::{IngestStats, StationIngest};
use crate::predict::Predictions;

/// Uplink sequence numbers reserved (durably) at a time.
const ARSN_BLOCK: u64 = 1024;
/// Virtual channel of acknowledgements on the uplink.
const ACK_VCID: u8 = 0;
const READ_CHUNK: usize = 256 * 1024;
/// How often a station's connection looks for products stored since its last read.
const STORE_POLL: std::time::Duration = std::time::Duration::from_millis(5);

/// What the service shows about one station connection.
#[derive(Debug, Clone, Serialize)]
pub struct StationStatus {
    pub station: String,
    pub connected: bool,
    pub bytes_received: u64,
    pub acknowledgements_sent: u64,
    pub link: DecodeStats,
    pub ingest: IngestStats,
}

/// The uplink sender, and how far its sequence numbers are reserved in the archive.
#[derive(Debug)]
struct Uplink {
    sender: UplinkSender,
    reserved_until: u64,
}

/// State shared by the station connections and the HTTP API.
#[derive(Debug)]
pub struct Service {
    pub archive: Arc<dyn Archive>,
    profile: LinkProfile,
    security: SecurityAssociation,
    spacecraft_id: u16,
    uplink: Mutex<Uplink>,
    pub stations: Mutex<BTreeMap<String, StationStatus>>,
    /// What console and API commands must present.
    operator_token: String,
    /// Command frames for every connected station (the spacecraft runs a frame once, however
    /// many stations relay it: its anti-replay check drops the copies).
    commands: tokio::sync::broadcast::Sender<Arc<Vec<u8>>>,
    /// The spacecraft's track and passes, when the mission file has its orbit.
    pub predictions: Option<Predictions>,
}

/// Why a command was not sent.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("the command does not fit one telecommand frame")]
    TooLarge,
}

fn now_unix_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("the link profile has no security association: ground serve needs the mission's key")]
    NoSecurity,
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("cannot listen on {address}: {source}")]
    Listen { address: SocketAddr, source: std::io::Error },
}

impl Service {
    pub fn new(profile: LinkProfile, archive: Arc<dyn Archive>, operator_token: String) -> Result<Self, ServeError> {
        let security = profile.security.clone().ok_or(ServeError::NoSecurity)?;
        let spacecraft_id = u16::from(profile.spacecraft_id.unwrap_or(0));
        let first = archive.reserve_uplink_arsns(ARSN_BLOCK)?;
        Ok(Self {
            uplink: Mutex::new(Uplink {
                sender: UplinkSender::new(security.clone(), spacecraft_id, ACK_VCID, first),
                reserved_until: first + ARSN_BLOCK,
            }),
            archive,
            profile,
            security,
            spacecraft_id,
            stations: Mutex::new(BTreeMap::new()),
            operator_token,
            commands: tokio::sync::broadcast::channel(64).0,
            predictions: None,
        })
    }

    pub fn with_predictions(self, predictions: Predictions) -> Self {
        Self { predictions: Some(predictions), ..self }
    }

    /// The spacecraft's time as the latest housekeeping tells it (its clock may be simulated and
    /// run fast), or the wall clock before any has arrived.
    pub fn spacecraft_time_ms(&self) -> i64 {
        let latest = TimelineQuery {
            kind: Kind::Housekeeping,
            from_ms: i64::MIN,
            to_ms: i64::MAX,
            limit: 1,
            newest_first: true,
        };
        let stamp = self.archive.timeline(&latest).ok().and_then(|found| {
            found.first().and_then(|bytes| Product::decode(bytes).ok()).map(|product| product.created_ms)
        });
        stamp.unwrap_or_else(now_unix_ms)
    }

    /// Whether `presented` is the operator token (compared in constant time).
    pub fn is_operator(&self, presented: &str) -> bool {
        let (a, b) = (self.operator_token.as_bytes(), presented.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0 && !a.is_empty()
    }

    /// Records an operator's command in the audit trail, then sends it up through every connected
    /// station; returns its audit id and how many stations took it.
    pub fn send_command(&self, operator: &str, command: &Telecommand) -> Result<(u64, usize), CommandError> {
        let text = serde_json::to_string(command).unwrap_or_default();
        self.uplink_audited(operator, text, 1, |sender, id| sender.command(id, command))
    }

    /// Uploads `file` as the new weights of model `model` (signed by the operator's model-signing
    /// key: `signature` over its SHA-256): its segments, then the `InstallModel` command, all
    /// under one audit id, which is also the transfer's.
    pub fn upload_model(
        &self,
        operator: &str,
        model: &str,
        file: &[u8],
        signature: Vec<u8>,
    ) -> Result<(u64, usize), CommandError> {
        let sha256: [u8; 32] = Sha256::digest(file).into();
        let hex: String = sha256.iter().map(|b| format!("{b:02x}")).collect();
        let text = serde_json::json!({ "UploadModel": { "model": model, "length": file.len(), "sha256": hex } });
        let frames = file.len().div_ceil(UPLOAD_SEGMENT_LEN) as u64 + 1;
        self.uplink_audited(operator, text.to_string(), frames, |sender, transfer| {
            let install = Telecommand::InstallModel {
                transfer,
                model: model.to_owned(),
                length: file.len() as u64,
                sha256,
                signature,
            };
            let mut frames = sender.upload(transfer, file);
            frames.extend(sender.command(transfer, &install)?);
            Some(frames)
        })
    }

    /// Audits `text`, builds its TC frames (at most `frames` of them) under the audit id, and
    /// sends them up through every connected station.
    fn uplink_audited(
        &self,
        operator: &str,
        text: String,
        frames: u64,
        build: impl FnOnce(&mut UplinkSender, u64) -> Option<Vec<u8>>,
    ) -> Result<(u64, usize), CommandError> {
        let entry = |outcome: String| AuditEntry {
            id: 0,
            unix_ms: now_unix_ms(),
            operator: operator.to_owned(),
            command: text.clone(),
            outcome,
        };
        let id = self.archive.audit(&entry("submitted".into()))?;
        let bytes = build(&mut self.reserved_uplink(frames)?.sender, id);
        let Some(bytes) = bytes else {
            self.archive.audit(&entry(format!("command {id}: refused, too large for one frame")))?;
            return Err(CommandError::TooLarge);
        };
        let stations = self.commands.send(Arc::new(bytes)).unwrap_or(0);
        let outcome = match stations {
            0 => format!("command {id}: no station connected, not sent"),
            n => format!("command {id}: sent through {n} station(s)"),
        };
        self.archive.audit(&entry(outcome))?;
        tracing::info!(id, operator, stations, "command sent");
        Ok((id, stations))
    }

    /// The uplink sender with at least `frames` sequence numbers reserved durably.
    fn reserved_uplink(&self, frames: u64) -> Result<std::sync::MutexGuard<'_, Uplink>, ArchiveError> {
        let mut uplink = self.uplink.lock().unwrap_or_else(|e| e.into_inner());
        if uplink.sender.next_arsn() + frames > uplink.reserved_until {
            let first = self.archive.reserve_uplink_arsns(ARSN_BLOCK.max(frames))?;
            uplink.sender = UplinkSender::new(self.security.clone(), self.spacecraft_id, ACK_VCID, first);
            uplink.reserved_until = first + ARSN_BLOCK.max(frames);
        }
        Ok(uplink)
    }

    /// TC frames acknowledging `ids`, with sequence numbers reserved durably first.
    fn acknowledgement(&self, ids: &[u64]) -> Result<Vec<u8>, ArchiveError> {
        let frames = ids.len().div_ceil(kestrel_link::uplink::MAX_ACKS_PER_PACKET) as u64;
        Ok(self.reserved_uplink(frames)?.sender.acknowledge(ids))
    }

    fn update(&self, status: StationStatus) {
        self.stations.lock().unwrap_or_else(|e| e.into_inner()).insert(status.station.clone(), status);
    }

    /// Sends the acknowledgement of `safe` (ids stored) up a station's socket.
    async fn acknowledge(&self, socket: &mut TcpStream, station: &str, safe: &[u64], status: &mut StationStatus) {
        if safe.is_empty() {
            return;
        }
        match self.acknowledgement(safe) {
            Ok(frames) => {
                if let Err(e) = socket.write_all(&frames).await {
                    tracing::warn!(%station, error = %e, "cannot send acknowledgements");
                } else {
                    status.acknowledgements_sent += safe.len() as u64;
                }
            }
            Err(e) => tracing::error!(%station, error = %e, "cannot reserve uplink sequence numbers"),
        }
    }

    /// Serves one station until it disconnects.
    async fn station(self: Arc<Self>, mut socket: TcpStream, peer: SocketAddr) {
        let station = peer.to_string();
        tracing::info!(%station, "station connected");
        let mut ingest = StationIngest::new(station.clone(), self.profile.clone(), self.archive.clone());
        let mut status = StationStatus {
            station: station.clone(),
            connected: true,
            bytes_received: 0,
            acknowledgements_sent: 0,
            link: DecodeStats::default(),
            ingest: IngestStats::default(),
        };
        let mut buffer = vec![0u8; READ_CHUNK];
        let mut commands = self.commands.subscribe();
        loop {
            let read = tokio::select! {
                read = socket.read(&mut buffer) => read,
                // products stored after their bytes were read: acknowledge them without waiting for more
                () = tokio::time::sleep(STORE_POLL), if ingest.in_flight() > 0 => {
                    match ingest.poll() {
                        Ok(safe) => {
                            self.acknowledge(&mut socket, &station, &safe, &mut status).await;
                            status.ingest = ingest.stats();
                            self.update(status.clone());
                        }
                        Err(e) => {
                            tracing::error!(%station, error = %e, "archive failure; closing the station's connection");
                            break;
                        }
                    }
                    continue;
                }
                frame = commands.recv() => {
                    match frame {
                        Ok(frame) => {
                            if let Err(e) = socket.write_all(&frame).await {
                                tracing::warn!(%station, error = %e, "cannot send a command");
                            }
                        }
                        Err(e) => tracing::warn!(%station, error = %e, "command frames missed"),
                    }
                    continue;
                }
            };
            let (n, ended) = match read {
                Ok(0) => (0, true),
                Ok(n) => (n, false),
                Err(e) => {
                    tracing::warn!(%station, error = %e, "station connection failed");
                    (0, true)
                }
            };
            status.bytes_received += n as u64;
            let now = now_unix_ms();
            // decoding and the archive's durable writes are blocking work
            let safe =
                tokio::task::block_in_place(|| if ended { ingest.finish(now) } else { ingest.push(&buffer[..n], now) });
            let safe = match safe {
                Ok(ids) => ids,
                Err(e) => {
                    tracing::error!(%station, error = %e, "archive failure; closing the station's connection");
                    break;
                }
            };
            self.acknowledge(&mut socket, &station, &safe, &mut status).await;
            status.link = ingest.link_stats();
            status.ingest = ingest.stats();
            if ended {
                break;
            }
            self.update(status.clone());
        }
        status.connected = false;
        self.update(status);
        tracing::info!(%station, "station disconnected");
    }
}

/// Accepts station connections forever.
pub async fn accept_stations(service: Arc<Service>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((socket, peer)) => {
                let _ = socket.set_nodelay(true);
                tokio::spawn(service.clone().station(socket, peer));
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Binds the CADU listener.
pub async fn bind(address: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(address).await.map_err(|source| ServeError::Listen { address, source })
}
