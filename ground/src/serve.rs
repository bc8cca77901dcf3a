//! `ground serve`: CADU streams from any number of stations over TCP at once, each decoded and
//! verified on its own, into one archive; acknowledgements back up each station's socket as
//! protected telecommand frames; and the HTTP API. A connection is served only once it has signed
//! on as a station the mission declares (`kestrel_link::station`): until then it gets no
//! telecommand and none of its bytes is decoded. A station that sends garbage, stalls, or drops
//! mid-CADU affects only its own connection; what any client can hold is bounded (sign-on time,
//! connections at once, the station table, writes a station does not take).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kestrel_dictionary::MissionDictionary;
use kestrel_link::decoder::DecodeStats;
use kestrel_link::product::{Kind, Product};
use kestrel_link::profile::LinkProfile;
use kestrel_link::security::SecurityAssociation;
use kestrel_link::station::{CHALLENGE_LEN, Challenge, HELLO_LEN, Hello, PROOF_LEN, StationName};
use kestrel_link::uplink::{Telecommand, UPLOAD_SEGMENT_LEN, UplinkSender};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::archive::{Archive, ArchiveError, AuditEntry, TimelineQuery};
use crate::ingest::{IngestStats, StationIngest};
use crate::operators::Operators;
use crate::predict::Predictions;
use crate::verification::{CommandLife, GroundStage, Released};

/// Uplink sequence numbers reserved (durably) at a time by a process that is its archive's only
/// user; one sharing its archive reserves each uplink's at send time.
const ARSN_BLOCK: u64 = 1024;
/// Virtual channel of acknowledgements on the uplink.
const ACK_VCID: u8 = 0;
const READ_CHUNK: usize = 256 * 1024;
/// How often a station's connection looks for products stored since its last read.
const STORE_POLL: Duration = Duration::from_millis(5);
/// A connection must sign on within this, or it is closed.
const SIGN_ON_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections signing on at once, from all peers and from one address; beyond, a new one is
/// closed at once (so strangers cannot crowd out a station's sign-on from elsewhere).
const MAX_SIGNING_ON: usize = 256;
const MAX_SIGNING_ON_PER_ADDRESS: usize = 32;
/// Signed-on station connections at once.
const MAX_STATION_CONNECTIONS: usize = 256;
/// Closed station connections the table keeps (the newest), besides the open ones.
pub const STATION_HISTORY: usize = 64;
/// A station that does not take an uplink write within this is disconnected: frames queued for
/// it would wait with it, and its share of the command ring with them.
const STATION_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Uplink bytes go to the stations in chunks of at most this, through a ring of `UPLINK_RING`
/// chunks shared by all stations: a model upload is held once, never a copy per station.
const UPLINK_CHUNK: usize = 64 * 1024;
const UPLINK_RING: usize = 4096;

/// A piece of the uplink stream, and how many product acknowledgements it carries.
#[derive(Debug)]
struct UplinkChunk {
    bytes: Vec<u8>,
    acknowledgements: usize,
}

/// What the service shows about one station connection.
#[derive(Debug, Clone, Serialize)]
pub struct StationStatus {
    /// The name it signed on with.
    pub station: String,
    /// This connection's number (the service counts connections from 1).
    pub connection: u64,
    pub peer: String,
    pub connected: bool,
    pub bytes_received: u64,
    /// Product acknowledgements relayed up this connection: its own products' and, since every
    /// station relays the whole uplink stream, those of products other stations delivered.
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
    stations: Mutex<StationTable>,
    station_keys: BTreeMap<StationName, [u8; 32]>,
    /// Peers signing on now.
    signing_on: Mutex<BTreeMap<IpAddr, usize>>,
    sign_on_refusals: Mutex<SignOnRefusals>,
    /// Public key that a model upload's signature must verify with (flight's own).
    model_verifying_key: ed25519_dalek::VerifyingKey,
    /// Who may command, by token (console and API commands must present one).
    operators: Operators,
    /// The mission dictionary (`GET /api/dictionary`), when the service was made from a mission.
    pub dictionary: Option<MissionDictionary>,
    /// Hazardous commands awaiting confirmation, by audit id (held by this process only).
    pending: Mutex<BTreeMap<u64, Pending>>,
    /// Contacts with no report after a command's release before it has timed out.
    timeout_contacts: u64,
    /// The uplink stream, in chunks, that every signed-on station relays: acknowledgements,
    /// commands and upload segments, in ARSN order (the spacecraft runs a frame once, however many
    /// stations relay it: its anti-replay check drops the copies, and a frame that overtook
    /// another would make that one a replay).
    uplink_stream: tokio::sync::broadcast::Sender<Arc<UplinkChunk>>,
    /// The spacecraft's track and passes, when the mission file has its orbit.
    pub predictions: Option<Predictions>,
}

/// What became of a command the ground took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Sent up through this many stations (0: none was connected, and it was not kept).
    Sent(usize),
    /// No station was connected: it waits in the queue for the next one to sign on.
    Queued,
    /// Hazardous: held until an operator confirms it (`POST /api/commands/{id}/confirm`).
    AwaitingConfirmation,
}

/// Why a command was not sent.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("the command does not fit one telecommand frame")]
    TooLarge,
    #[error("the model's signature does not verify with the mission's model verifying key")]
    BadSignature,
    /// A command the spacecraft would refuse (the mission dictionary says why): nothing went up.
    #[error("{0}")]
    Invalid(String),
    #[error(
        "command {0} is not awaiting confirmation (confirmed or cancelled already, held longer than {window} s, or held by another ground process)",
        window = CONFIRMATION_WINDOW.as_secs()
    )]
    NotAwaiting(u64),
}

/// Hazardous work held until an operator confirms it.
#[derive(Debug)]
enum Held {
    Command(Telecommand),
    Upload { model: String, file: Vec<u8>, signature: Vec<u8> },
}

#[derive(Debug)]
struct Pending {
    operator: String,
    /// The audit's text of it.
    text: String,
    held: Held,
    expires: Instant,
}

/// How long a hazardous command waits for its confirmation before it can no longer be confirmed.
pub const CONFIRMATION_WINDOW: Duration = Duration::from_secs(600);
/// Held commands at most (each may hold a model of 8 MiB); beyond, the oldest is dropped.
const MAX_AWAITING_CONFIRMATION: usize = 16;
/// Contacts after its release with no report from the spacecraft, by default, before a command
/// is reported timed out.
pub const DEFAULT_TIMEOUT_CONTACTS: u64 = 3;

/// Why the spacecraft would refuse `command`, by the mission dictionary, if it would.
fn dictionary_refusal(command: &Telecommand) -> Option<String> {
    match command {
        Telecommand::SetParameter { name, value } => {
            kestrel_dictionary::Parameter::check(name, *value).err().map(|e| e.to_string())
        }
        Telecommand::TimeTagged { commands } => commands.iter().find_map(|(at, command)| {
            dictionary_refusal(command).map(|why| format!("the command at {at} (Unix ms): {why}"))
        }),
        _ => None,
    }
}

/// Connections refused before or at sign-on, by reason.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SignOnRefusals {
    /// Bytes that are not a sign-on (or a connection closed before its hello was whole).
    pub malformed: u64,
    /// A hello naming no `[[ground.stations]]` entry.
    pub unknown_station: u64,
    /// A proof that does not verify under the named station's key.
    pub not_authentic: u64,
    pub timed_out: u64,
    /// Connections closed because too many were signing on or connected already.
    pub over_limit: u64,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Malformed,
    UnknownStation,
    NotAuthentic,
    TimedOut,
    OverLimit,
}

/// Station connections: every open one, and the newest closed ones up to `STATION_HISTORY`.
#[derive(Debug, Default)]
struct StationTable {
    next_connection: u64,
    connections: BTreeMap<u64, StationStatus>,
}

impl StationTable {
    fn open(&mut self, station: &StationName, peer: SocketAddr) -> Option<StationStatus> {
        if self.connections.values().filter(|s| s.connected).count() >= MAX_STATION_CONNECTIONS {
            return None;
        }
        self.next_connection += 1;
        let status = StationStatus {
            station: station.to_string(),
            connection: self.next_connection,
            peer: peer.to_string(),
            connected: true,
            bytes_received: 0,
            acknowledgements_sent: 0,
            link: DecodeStats::default(),
            ingest: IngestStats::default(),
        };
        self.connections.insert(status.connection, status.clone());
        Some(status)
    }

    fn update(&mut self, status: StationStatus) {
        let closed = !status.connected;
        self.connections.insert(status.connection, status);
        if closed {
            let closed: Vec<u64> = self.connections.values().filter(|s| !s.connected).map(|s| s.connection).collect();
            for connection in &closed[..closed.len().saturating_sub(STATION_HISTORY)] {
                self.connections.remove(connection);
            }
        }
    }
}

fn now_unix_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("the link profile has no security association: ground serve needs the mission's key")]
    NoSecurity,
    #[error("the model verifying key is not an ed25519 public key")]
    ModelKey,
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("cannot listen on {address}: {source}")]
    Listen { address: SocketAddr, source: std::io::Error },
}

impl Service {
    pub fn new(
        profile: LinkProfile,
        archive: Arc<dyn Archive>,
        operators: Operators,
        station_keys: BTreeMap<StationName, [u8; 32]>,
        model_verifying_key: [u8; 32],
    ) -> Result<Self, ServeError> {
        let security = profile.security.clone().ok_or(ServeError::NoSecurity)?;
        let model_verifying_key =
            ed25519_dalek::VerifyingKey::from_bytes(&model_verifying_key).map_err(|_| ServeError::ModelKey)?;
        let spacecraft_id = u16::from(profile.spacecraft_id.unwrap_or(0));
        // a shared archive's numbers are taken at send time: none held ahead
        let block = if archive.is_shared() { 0 } else { ARSN_BLOCK };
        let first = archive.reserve_uplink_arsns(block)?;
        Ok(Self {
            uplink: Mutex::new(Uplink {
                sender: UplinkSender::new(security.clone(), spacecraft_id, ACK_VCID, first),
                reserved_until: first + block,
            }),
            archive,
            profile,
            security,
            spacecraft_id,
            stations: Mutex::new(StationTable::default()),
            station_keys,
            signing_on: Mutex::new(BTreeMap::new()),
            sign_on_refusals: Mutex::new(SignOnRefusals::default()),
            model_verifying_key,
            operators,
            dictionary: None,
            pending: Mutex::new(BTreeMap::new()),
            timeout_contacts: DEFAULT_TIMEOUT_CONTACTS,
            uplink_stream: tokio::sync::broadcast::channel(UPLINK_RING).0,
            predictions: None,
        })
    }

    pub fn with_predictions(self, predictions: Predictions) -> Self {
        Self { predictions: Some(predictions), ..self }
    }

    pub fn with_dictionary(self, dictionary: MissionDictionary) -> Self {
        Self { dictionary: Some(dictionary), ..self }
    }

    /// A released command with no report from the spacecraft after this many contacts has timed out.
    pub fn with_timeout_contacts(self, contacts: u64) -> Self {
        Self { timeout_contacts: contacts, ..self }
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

    /// The name of the operator whose token `presented` is.
    pub fn operator(&self, presented: &str) -> Option<&str> {
        self.operators.authenticate(presented)
    }

    /// Takes an operator's command: refused if the spacecraft would refuse it, held for
    /// confirmation if it is hazardous, else released (sent up, or queued with no station).
    pub fn send_command(&self, operator: &str, command: &Telecommand) -> Result<(u64, Release), CommandError> {
        if let Some(why) = dictionary_refusal(command) {
            return Err(CommandError::Invalid(why));
        }
        if !kestrel_link::uplink::command_fits(u64::MAX, command) {
            return Err(CommandError::TooLarge);
        }
        let text = serde_json::to_string(command).unwrap_or_default();
        let id = self.audit_line(operator, &text, "submitted".into())?;
        if kestrel_dictionary::is_hazardous(command) {
            return self.await_confirmation(operator, id, &text, Held::Command(command.clone()));
        }
        self.release_command(operator, id, &text, command)
    }

    /// Holds hazardous work `held` (audited as `id`) until an operator confirms it.
    fn await_confirmation(
        &self,
        operator: &str,
        id: u64,
        text: &str,
        held: Held,
    ) -> Result<(u64, Release), CommandError> {
        self.audit_line(operator, text, GroundStage::AwaitingConfirmation.outcome(id))?;
        let expires = Instant::now() + CONFIRMATION_WINDOW;
        let dropped = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            // what waits longest goes first when too many wait
            let oldest = (pending.len() >= MAX_AWAITING_CONFIRMATION).then(|| pending.pop_first()).flatten();
            pending.insert(id, Pending { operator: operator.to_owned(), text: text.to_owned(), held, expires });
            oldest
        };
        if let Some((oldest, dropped)) = dropped {
            let reason =
                format!("dropped unconfirmed: {MAX_AWAITING_CONFIRMATION} newer commands awaited confirmation");
            self.audit_line(&dropped.operator, &dropped.text, GroundStage::NotSent { reason }.outcome(oldest))?;
        }
        tracing::info!(id, operator, "hazardous command held for confirmation");
        Ok((id, Release::AwaitingConfirmation))
    }

    /// Audits as not sent, and forgets, the held commands whose confirmation window has passed.
    fn expire_holds(&self) -> Result<(), ArchiveError> {
        let now = Instant::now();
        let expired: Vec<(u64, Pending)> = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            let ids: Vec<u64> = pending.iter().filter(|(_, p)| now > p.expires).map(|(id, _)| *id).collect();
            ids.into_iter().filter_map(|id| pending.remove(&id).map(|p| (id, p))).collect()
        };
        for (id, pending) in expired {
            let reason = format!("not confirmed within {} s", CONFIRMATION_WINDOW.as_secs());
            self.audit_line(&pending.operator, &pending.text, GroundStage::NotSent { reason }.outcome(id))?;
        }
        Ok(())
    }

    /// An operator confirms held command `id`: it is released as if just submitted.
    pub fn confirm(&self, operator: &str, id: u64) -> Result<(u64, Release), CommandError> {
        self.expire_holds()?;
        let taken = self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        let Some(pending) = taken else { return Err(CommandError::NotAwaiting(id)) };
        let confirmed = GroundStage::Confirmed { by: operator.to_owned() };
        self.audit_line(&pending.operator, &pending.text, confirmed.outcome(id))?;
        match pending.held {
            Held::Command(command) => self.release_command(&pending.operator, id, &pending.text, &command),
            Held::Upload { model, file, signature } => {
                let stations = self.release_upload(&pending.operator, id, &pending.text, &model, &file, signature)?;
                Ok((id, Release::Sent(stations)))
            }
        }
    }

    /// Sends submitted command `id` up through every connected station, or queues it when none is.
    fn release_command(
        &self,
        operator: &str,
        id: u64,
        text: &str,
        command: &Telecommand,
    ) -> Result<(u64, Release), CommandError> {
        if self.uplink_stream.receiver_count() == 0 {
            // no station to send it through: it waits, durably, for the next one to sign on; audited
            // first, so that its release (by any process, as soon as it is queued) comes after
            self.audit_line(operator, text, GroundStage::Queued.outcome(id))?;
            if let Err(e) = self.archive.enqueue_command(id) {
                let reason = format!("it could not be queued: {e}");
                self.audit_line(operator, text, GroundStage::NotSent { reason }.outcome(id))?;
                return Err(e.into());
            }
            tracing::info!(id, operator, "command queued");
            return Ok((id, Release::Queued));
        }
        let stations = self.release_audited(operator, id, text, 1, |sender| sender.command(id, command))?;
        Ok((id, Release::Sent(stations)))
    }

    /// Sends the queued commands up (a station has just joined the uplink stream), oldest first,
    /// each taken out of the queue before it goes, so that no other process sharing the archive
    /// sends it too.
    fn release_queued(&self) -> Result<(), ArchiveError> {
        for id in self.archive.queued_commands()? {
            // the entry is read before the command leaves the queue, so a failure leaves it queued
            let Some(entry) = self.archive.audit_entry(id)? else { continue };
            if !self.archive.dequeue_command(id)? {
                continue;
            }
            let stage = match serde_json::from_str::<Telecommand>(&entry.command) {
                Ok(command) => match self.send_up(1, 0, |sender| sender.command(id, &command)) {
                    Ok(Some(released)) => GroundStage::Released(released),
                    Ok(None) => GroundStage::NotSent { reason: "too large for one frame".into() },
                    Err(e) => {
                        // not sent: back in the queue for the next station
                        self.archive.enqueue_command(id)?;
                        return Err(e);
                    }
                },
                Err(e) => GroundStage::NotSent { reason: format!("its queued text is not a command ({e})") },
            };
            tracing::info!(id, ?stage, "queued command");
            self.audit_line(&entry.operator, &entry.command, stage.outcome(id))?;
        }
        Ok(())
    }

    /// Takes command `id` out of the queue or from awaiting confirmation, so it is never sent;
    /// false if it is neither (sent already, cancelled, or never held).
    pub fn cancel_command(&self, operator: &str, id: u64) -> Result<bool, ArchiveError> {
        let held = self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&id).is_some();
        if !held && !self.archive.dequeue_command(id)? {
            return Ok(false);
        }
        let command = self.archive.audit_entry(id)?.map(|e| e.command);
        let cancelled = GroundStage::Cancelled { by: operator.to_owned() };
        self.audit_line(operator, &command.unwrap_or_default(), cancelled.outcome(id))?;
        Ok(true)
    }

    /// The commands waiting for a station, oldest first (their audit entries).
    pub fn command_queue(&self) -> Result<Vec<AuditEntry>, ArchiveError> {
        let mut queued = Vec::new();
        for id in self.archive.queued_commands()? {
            queued.extend(self.archive.audit_entry(id)?);
        }
        Ok(queued)
    }

    /// The hazardous commands awaiting confirmation, oldest first (their audit entries).
    pub fn awaiting_confirmation(&self) -> Result<Vec<AuditEntry>, ArchiveError> {
        self.expire_holds()?;
        let ids: Vec<u64> = self.pending.lock().unwrap_or_else(|e| e.into_inner()).keys().copied().collect();
        let mut held = Vec::new();
        for id in ids {
            held.extend(self.archive.audit_entry(id)?);
        }
        Ok(held)
    }

    /// Command `id`'s stages (`GET /api/commands/{id}`).
    pub fn command_life(&self, id: u64) -> Result<Option<CommandLife>, ArchiveError> {
        crate::verification::command_life(self.archive.as_ref(), id, self.timeout_contacts)
    }

    /// Appends an audit entry about `command` (its JSON); returns the entry's id.
    fn audit_line(&self, operator: &str, command: &str, outcome: String) -> Result<u64, ArchiveError> {
        let entry = AuditEntry {
            id: 0,
            unix_ms: now_unix_ms(),
            operator: operator.to_owned(),
            command: command.to_owned(),
            outcome,
        };
        self.archive.audit(&entry)
    }

    /// Takes an upload of `file` as the new weights of model `model` (signed by the operator's
    /// model-signing key: `signature` over its SHA-256), held for confirmation (installing a model
    /// is hazardous): then its segments and the `InstallModel` command go up under one audit id,
    /// which is also the transfer's. A signature that flight would refuse is refused here, before
    /// anything is held.
    pub fn upload_model(
        &self,
        operator: &str,
        model: &str,
        file: &[u8],
        signature: Vec<u8>,
    ) -> Result<(u64, Release), CommandError> {
        let sha256: [u8; 32] = Sha256::digest(file).into();
        let verified = <[u8; 64]>::try_from(signature.as_slice()).is_ok_and(|bytes| {
            use ed25519_dalek::Verifier;
            self.model_verifying_key.verify(&sha256, &ed25519_dalek::Signature::from_bytes(&bytes)).is_ok()
        });
        if !verified {
            return Err(CommandError::BadSignature);
        }
        let hex: String = sha256.iter().map(|b| format!("{b:02x}")).collect();
        let text = serde_json::json!({ "UploadModel": { "model": model, "length": file.len(), "sha256": hex } });
        let text = text.to_string();
        let id = self.audit_line(operator, &text, "submitted".into())?;
        let held = Held::Upload { model: model.to_owned(), file: file.to_vec(), signature };
        self.await_confirmation(operator, id, &text, held)
    }

    /// Sends confirmed upload `id`: its segments, then its `InstallModel` command.
    fn release_upload(
        &self,
        operator: &str,
        id: u64,
        text: &str,
        model: &str,
        file: &[u8],
        signature: Vec<u8>,
    ) -> Result<usize, CommandError> {
        let frames = file.len().div_ceil(UPLOAD_SEGMENT_LEN) as u64 + 1;
        self.release_audited(operator, id, text, frames, |sender| {
            let sha256: [u8; 32] = Sha256::digest(file).into();
            let install = Telecommand::InstallModel {
                transfer: id,
                model: model.to_owned(),
                length: file.len() as u64,
                sha256,
                signature,
            };
            let mut frames = sender.upload(id, file);
            frames.extend(sender.command(id, &install)?);
            Some(frames)
        })
    }

    /// Builds submitted `id`'s TC frames (at most `frames` of them), sends them up through every
    /// connected station, and audits what became of them.
    fn release_audited(
        &self,
        operator: &str,
        id: u64,
        text: &str,
        frames: u64,
        build: impl FnOnce(&mut UplinkSender) -> Option<Vec<u8>>,
    ) -> Result<usize, CommandError> {
        let released = self.send_up(frames, 0, build)?;
        let stage = match released {
            None => GroundStage::NotSent { reason: "too large for one frame".into() },
            Some(Released { stations: 0, .. }) => GroundStage::NotSent { reason: "no station connected".into() },
            Some(released) => GroundStage::Released(released),
        };
        self.audit_line(operator, text, stage.outcome(id))?;
        tracing::info!(id, operator, ?stage, "command");
        released.map(|r| r.stations).ok_or(CommandError::TooLarge)
    }

    /// Builds at most `frames` TC frames with sequence numbers reserved durably, and puts them on
    /// the uplink stream, under one lock: whatever made them, frames leave in ARSN order. Returns
    /// how many stations took them and in which ARSNs, or `None` if `build` made none.
    fn send_up(
        &self,
        frames: u64,
        acknowledgements: usize,
        build: impl FnOnce(&mut UplinkSender) -> Option<Vec<u8>>,
    ) -> Result<Option<Released>, ArchiveError> {
        let mut uplink = self.reserved_uplink(frames)?;
        let first_arsn = uplink.sender.next_arsn();
        let Some(bytes) = build(&mut uplink.sender) else { return Ok(None) };
        let last_arsn = uplink.sender.next_arsn() - 1;
        let mut stations = 0;
        for (i, chunk) in bytes.chunks(UPLINK_CHUNK).enumerate() {
            let chunk =
                UplinkChunk { bytes: chunk.to_vec(), acknowledgements: if i == 0 { acknowledgements } else { 0 } };
            stations = self.uplink_stream.send(Arc::new(chunk)).unwrap_or(0);
        }
        drop(uplink);
        Ok(Some(Released { stations, first_arsn, last_arsn }))
    }

    /// The uplink sender with at least `frames` sequence numbers reserved durably.
    fn reserved_uplink(&self, frames: u64) -> Result<std::sync::MutexGuard<'_, Uplink>, ArchiveError> {
        let mut uplink = self.uplink.lock().unwrap_or_else(|e| e.into_inner());
        if uplink.sender.next_arsn() + frames > uplink.reserved_until {
            let block = if self.archive.is_shared() { frames } else { ARSN_BLOCK.max(frames) };
            let first = self.archive.reserve_uplink_arsns(block)?;
            uplink.sender = UplinkSender::new(self.security.clone(), self.spacecraft_id, ACK_VCID, first);
            uplink.reserved_until = first + block;
        }
        Ok(uplink)
    }

    /// Puts the acknowledgement of `ids` (stored) on the uplink stream.
    fn acknowledge(&self, ids: &[u64], station: &str) {
        if ids.is_empty() {
            return;
        }
        let frames = ids.len().div_ceil(kestrel_link::uplink::MAX_ACKS_PER_PACKET) as u64;
        if let Err(e) = self.send_up(frames, ids.len(), |sender| Some(sender.acknowledge(ids))) {
            tracing::error!(%station, error = %e, "cannot reserve uplink sequence numbers");
        }
    }

    fn update(&self, status: StationStatus) {
        self.stations.lock().unwrap_or_else(|e| e.into_inner()).update(status);
    }

    /// Every open station connection and the newest closed ones, oldest first.
    pub fn station_list(&self) -> Vec<StationStatus> {
        self.stations.lock().unwrap_or_else(|e| e.into_inner()).connections.values().cloned().collect()
    }

    /// Connections refused before or at sign-on so far.
    pub fn sign_on_refusals(&self) -> SignOnRefusals {
        self.sign_on_refusals.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn refuse(&self, peer: SocketAddr, refusal: Refusal) {
        let mut refusals = self.sign_on_refusals.lock().unwrap_or_else(|e| e.into_inner());
        let count = match refusal {
            Refusal::Malformed => &mut refusals.malformed,
            Refusal::UnknownStation => &mut refusals.unknown_station,
            Refusal::NotAuthentic => &mut refusals.not_authentic,
            Refusal::TimedOut => &mut refusals.timed_out,
            Refusal::OverLimit => &mut refusals.over_limit,
        };
        *count += 1;
        tracing::debug!(%peer, ?refusal, "connection refused");
    }

    /// Writes `bytes` up a station's socket within `STATION_WRITE_TIMEOUT`; false if it did not.
    async fn write_up(socket: &mut TcpStream, bytes: &[u8]) -> bool {
        matches!(tokio::time::timeout(STATION_WRITE_TIMEOUT, socket.write_all(bytes)).await, Ok(Ok(())))
    }

    /// Writes a chunk of the uplink stream up a station's socket; false if it did not take it.
    async fn relay(socket: &mut TcpStream, chunk: &UplinkChunk, status: &mut StationStatus) -> bool {
        let taken = Self::write_up(socket, &chunk.bytes).await;
        if taken {
            status.acknowledgements_sent += chunk.acknowledgements as u64;
        }
        taken
    }

    /// The station's side of sign-on, read and answered on `socket`: the name it proved.
    async fn sign_on(&self, socket: &mut TcpStream) -> Result<StationName, Refusal> {
        let mut hello = [0u8; HELLO_LEN];
        socket.read_exact(&mut hello).await.map_err(|_| Refusal::Malformed)?;
        let hello = Hello::decode(&hello).map_err(|_| Refusal::Malformed)?;
        let key = self.station_keys.get(&hello.name).ok_or(Refusal::UnknownStation)?;
        let challenge = Challenge::answer(&hello, key).map_err(|_| Refusal::Malformed)?;
        let answer: [u8; CHALLENGE_LEN] = challenge.encode();
        socket.write_all(&answer).await.map_err(|_| Refusal::Malformed)?;
        let mut proof = [0u8; PROOF_LEN];
        socket.read_exact(&mut proof).await.map_err(|_| Refusal::Malformed)?;
        challenge.verify(&hello, key, &proof).map_err(|_| Refusal::NotAuthentic)?;
        Ok(hello.name)
    }

    /// Takes a new connection: one more signing on from its address, or refused over the limits.
    fn admit(&self, peer: SocketAddr) -> bool {
        let mut signing_on = self.signing_on.lock().unwrap_or_else(|e| e.into_inner());
        let (total, here) = (signing_on.values().sum::<usize>(), signing_on.get(&peer.ip()).copied().unwrap_or(0));
        if total >= MAX_SIGNING_ON || here >= MAX_SIGNING_ON_PER_ADDRESS {
            return false;
        }
        *signing_on.entry(peer.ip()).or_default() += 1;
        true
    }

    fn signed_on(&self, peer: SocketAddr) {
        let mut signing_on = self.signing_on.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = signing_on.get_mut(&peer.ip()) {
            *count -= 1;
            if *count == 0 {
                signing_on.remove(&peer.ip());
            }
        }
    }

    /// Serves one connection: its sign-on, then its station's stream until it disconnects.
    async fn connection(self: Arc<Self>, mut socket: TcpStream, peer: SocketAddr) {
        if !self.admit(peer) {
            self.refuse(peer, Refusal::OverLimit);
            return;
        }
        let signed = tokio::time::timeout(SIGN_ON_TIMEOUT, self.sign_on(&mut socket)).await;
        self.signed_on(peer);
        let name = match signed {
            Ok(Ok(name)) => name,
            Ok(Err(refusal)) => return self.refuse(peer, refusal),
            Err(_) => return self.refuse(peer, Refusal::TimedOut),
        };
        let opened = self.stations.lock().unwrap_or_else(|e| e.into_inner()).open(&name, peer);
        let Some(status) = opened else { return self.refuse(peer, Refusal::OverLimit) };
        self.station(socket, status).await;
    }

    /// Serves a signed-on station until it disconnects.
    async fn station(&self, mut socket: TcpStream, mut status: StationStatus) {
        let station = status.station.clone();
        tracing::info!(%station, peer = %status.peer, connection = status.connection, "station signed on");
        // subscribed before anything else, so that no frame sent from now on is missed
        let mut uplink = self.uplink_stream.subscribe();
        if let Err(e) = tokio::task::block_in_place(|| self.archive.record_contact(now_unix_ms())) {
            tracing::error!(%station, error = %e, "archive failure; the contact is not counted");
        }
        if let Err(e) = tokio::task::block_in_place(|| self.release_queued()) {
            tracing::error!(%station, error = %e, "archive failure; the queued commands stay queued");
        }
        let mut ingest = match StationIngest::new(station.clone(), self.profile.clone(), self.archive.clone()) {
            Ok(ingest) => ingest,
            Err(e) => {
                tracing::error!(%station, error = %e, "archive failure; closing the station's connection");
                status.connected = false;
                return self.update(status);
            }
        };
        let mut buffer = vec![0u8; READ_CHUNK];
        loop {
            let read = tokio::select! {
                read = socket.read(&mut buffer) => read,
                // products stored after their bytes were read: acknowledge them without waiting for more
                () = tokio::time::sleep(STORE_POLL), if ingest.in_flight() > 0 => {
                    match ingest.poll() {
                        Ok(safe) => {
                            self.acknowledge(&safe, &station);
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
                chunk = uplink.recv() => {
                    let taken = match chunk {
                        Ok(chunk) => Self::relay(&mut socket, &chunk, &mut status).await,
                        Err(e) => {
                            // the stream up it has a gap now: a fresh connection starts clean
                            tracing::warn!(%station, error = %e, "the station fell behind the uplink");
                            false
                        }
                    };
                    if !taken {
                        tracing::warn!(%station, "the station does not take its uplink; disconnected");
                        break;
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
            self.acknowledge(&safe, &station);
            status.link = ingest.link_stats();
            status.ingest = ingest.stats();
            if ended {
                // the station has sent all it will: what the stream holds for it (its last
                // acknowledgements among it) goes up before the connection closes
                while let Ok(chunk) = uplink.try_recv() {
                    if !Self::relay(&mut socket, &chunk, &mut status).await {
                        break;
                    }
                }
                break;
            }
            self.update(status.clone());
        }
        status.connected = false;
        self.update(status);
        tracing::info!(%station, "station disconnected");
    }
}

/// How often a process with a station signed on looks for commands queued by other processes on
/// its archive (they had no station): those go up through this one within this time.
const QUEUE_POLL: Duration = Duration::from_secs(1);

/// Every `QUEUE_POLL`: held commands past their confirmation window are audited as not sent, and,
/// with a station signed on, commands queued anywhere on the archive go up.
async fn release_queue_while_in_contact(service: Arc<Service>) {
    let mut tick = tokio::time::interval(QUEUE_POLL);
    loop {
        tick.tick().await;
        if let Err(e) = tokio::task::block_in_place(|| service.expire_holds()) {
            tracing::error!(error = %e, "archive failure; expired holds are audited later");
        }
        if service.uplink_stream.receiver_count() == 0 {
            continue;
        }
        if let Err(e) = tokio::task::block_in_place(|| service.release_queued()) {
            tracing::error!(error = %e, "archive failure; the queued commands stay queued");
        }
    }
}

/// Accepts station connections forever; while one is signed on, commands queued anywhere on the
/// archive go up through it.
pub async fn accept_stations(service: Arc<Service>, listener: TcpListener) {
    tokio::spawn(release_queue_while_in_contact(service.clone()));
    loop {
        match listener.accept().await {
            Ok((socket, peer)) => {
                let _ = socket.set_nodelay(true);
                tokio::spawn(service.clone().connection(socket, peer));
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Binds the CADU listener.
pub async fn bind(address: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(address).await.map_err(|source| ServeError::Listen { address, source })
}
