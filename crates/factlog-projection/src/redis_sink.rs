//! The Redis sink: read models as Redis keys, changed together with the projection's checkpoint
//! by one Lua script per batch (Redis runs a script atomically: no other client sees it half
//! done, and a crash loses all of it or none).
//!
//! # Keys
//!
//! Every key starts with the sink's key prefix (`factlog:`, say; printable ASCII without
//! spaces). For a projection `<name>`:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `<prefix>schema` | string | the version of this key layout (2); a newer one is refused |
//! | `<prefix>projection:<name>` | hash | `live_generation`, `paused` (`0`/`1`) |
//! | `<prefix>checkpoint:<name>` | hash | `<gen>` -> the checkpoint's position, in decimal; `<gen>:partitions` -> the partitions of a per-partition checkpoint (absent for a totally ordered one), as [`Checkpoint::to_columns`] writes them |
//! | `<prefix>progress:<name>` | hash | `<gen>:partial`: how far a failed script got (see below) |
//! | `<prefix>dead:<name>` | hash | dead letter id -> the dead letter as JSON |
//! | `<prefix>dead-seq:<name>` | string | the last dead letter id |
//! | `<prefix>generations:<name>` | set | the generations that have (or had) read-model keys |
//! | `<prefix>generations:<name>:<gen>:keys` | set | every read-model key handed out by [`RedisUnit::key`] in that generation |
//! | `<prefix>rm:<name>:g<gen>:<suffix>` | any | the read model: the keys the projection writes |
//!
//! Version 1 of the layout had no `<gen>:partitions` fields: its checkpoints are the totally
//! ordered checkpoints they were in version 2, so migrating only raises the version (which
//! keeps an older Factlog, which would not see the partitions, away).
//!
//! Readers find the live generation's key of a suffix with [`RedisSink::live_key`] (it reads
//! `live_generation`). Swapping generations switches `live_generation` in one script; the old
//! generation's keys are deleted after it, in batches of 1,000 (`SPOP` + `UNLINK` in a short
//! script each), so that a large read model never blocks Redis for long. A generation whose
//! deletion was cut short (a crash) is finished by the next swap, drop or creation of a
//! generation of the projection. A reader that resolved a key just before a swap may find it
//! gone: resolve it again.
//!
//! # Units of work
//!
//! A projection's handler cannot wait for Redis, so [`RedisUnit`] *queues* commands
//! ([`RedisUnit::cmd`], [`RedisUnit::command`]); they run inside the batch's script, with
//! `redis.pcall`, in order, after the script has checked the checkpoint (the fence) and before
//! it moves it. One script call (`EVALSHA`, loading the script on `NOSCRIPT`) per batch. Every
//! command costs Redis time (and, with an append-only file, a write to it), so a unit also
//! takes *final* commands, idempotent ones that run once per batch after the others:
//! [`RedisUnit::cmd_once`] (the same command from many events, run once) and
//! [`RedisUnit::cmd_last`] (only the last of a token's commands runs: a row's latest values).
//!
//! **Redis does not roll back a script's writes when one of its commands fails** (documented
//! Redis behaviour): the commands before the failing one stay applied. The script checks what
//! it can before writing anything (the fence), but a command's own error (a wrong type, an
//! unknown command, a wrong number of arguments) shows only when it runs. So the script
//! records, with the unchanged checkpoint, how far it got (`<gen>:partial`): when the runner
//! applies the batch again, one event at a time to find the failing one, the script skips what
//! already ran. With a totally ordered checkpoint the events of a batch are in position order,
//! and the marker holds the failing event's position and how many of its commands ran (every
//! command of the events before it ran). With a per-partition checkpoint they are not (the
//! partitions are merged), so the marker holds, for each event whose commands ran, its
//! position and how many of its commands ran; an entry goes when its event is applied or
//! parked. The
//! commands of the failing event that ran before its failing command stay applied (once); if
//! the event is parked and later retried, they run again (as they do each time a retry fails
//! part-way). Final commands are never skipped: being idempotent, running them again is
//! harmless. Handlers must therefore be deterministic (they must anyway: after a crash, events
//! are handled again).
//!
//! A command error is a permanent failure of its event (it is parked, or stops the projection),
//! except errors of the server's state (`OOM`, `BUSY`, `LOADING`, `READONLY`, `MISCONF`, ...),
//! which make the sink unavailable (retried with backoff).
//!
//! Limits: a command has at most 7,000 arguments (Lua's `unpack`); the scripts build key names
//! from the prefix, so they need a single Redis server (not Redis Cluster).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use factlog_store::{Checkpoint, EventId, Position, RecordedEvent, Timestamp};
use parking_lot::Mutex;
use redis::aio::MultiplexedConnection;
use redis::{Arg, Cmd, ErrorKind, RedisError, Script, Value};
use serde::{Deserialize, Serialize};

use crate::projection::{Projection, ProjectionName};
use crate::sink::{
    ApplyError, DeadLetter, DeadLetterStatus, NewDeadLetter, Sink, SinkError, Stored, Target,
};

/// The version of the key layout described in the module documentation.
const SCHEMA_VERSION: u64 = 2;
const KEY_PREFIX_BYTES_MAX: usize = 256;
/// Lua's `unpack` fails at about 8,000 values.
const COMMAND_ARGS_MAX: usize = 7000;
/// Keys deleted per script when a generation is dropped.
const PURGE_BATCH: usize = 1000;
/// Attempts of a compare-and-set of a dead letter that others keep changing.
const CAS_ATTEMPTS: usize = 16;
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// Shared by the scripts. Positions are compared as decimal strings (exact for any u64, where
/// Lua's numbers are doubles).
///
/// A checkpoint travels to and from the scripts as one string ([`script_checkpoint`]): its
/// position (`42`), or for a per-partition one the position, `/` and its partitions
/// (`0/3:17,9:1099511627776`). The scripts store it in the checkpoint hash as two fields (see
/// the module documentation) and compare it whole.
const PRELUDE: &str = r#"
local function lt(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end

-- The partitions of a checkpoint ('' when it has none yet), or nil for a totally ordered one.
local function partitions_of(checkpoint)
  return string.match(checkpoint, '^%d+/(.*)$')
end

-- The checkpoint of gen, or false when gen has none.
local function get_checkpoint(checkpoints, gen)
  local position = redis.call('HGET', checkpoints, gen)
  if not position then return false end
  local partitions = redis.call('HGET', checkpoints, gen .. ':partitions')
  if partitions then return position .. '/' .. partitions end
  return position
end

local function set_checkpoint(checkpoints, gen, checkpoint)
  local position, partitions = string.match(checkpoint, '^(%d+)/(.*)$')
  if position then
    redis.call('HSET', checkpoints, gen, position, gen .. ':partitions', partitions)
  else
    redis.call('HSET', checkpoints, gen, checkpoint)
    redis.call('HDEL', checkpoints, gen .. ':partitions')
  end
end

-- Whether the per-partition checkpoint a has read everything b has (false when either is
-- totally ordered).
local function reached(a, b)
  local pa, pb = partitions_of(a), partitions_of(b)
  if not pa or not pb then return false end
  local mine = {}
  for k, p in string.gmatch(pa, '(%d+):(%d+)') do mine[k] = p end
  for k, p in string.gmatch(pb, '(%d+):(%d+)') do
    if not mine[k] or lt(mine[k], p) then return false end
  end
  return true
end

-- The queued commands, from ARGV[first] to ARGV[last]: for each, its number of arguments n
-- and the n arguments; the first command of each event has -n instead, followed by the
-- event's position. Then, after a 0, the final commands (idempotent: cmd_once, cmd_last),
-- each n and its arguments. skip(position) says how many of the event's first commands ran in
-- an earlier failed run (math.huge: all): they are skipped; final commands never are. With a
-- table seen, records in it, by position, how many of each event's commands are done (ran
-- now or earlier).
-- Returns nil, or the failure: {command index, position and commands done of the last event
-- whose commands ran, error}.
local function run(first, last, skip, seen)
  local i, index, position, done = first, 0, '0', 0
  local skipped, final = 0, false
  while i <= last do
    local n = tonumber(ARGV[i])
    if n == 0 then
      final = true
      i = i + 1
    else
      if n < 0 then
        n = -n
        i = i + 1
        position, done = ARGV[i], 0
        skipped = skip(position)
      end
      if final or done >= skipped then
        local reply = redis.pcall(unpack(ARGV, i + 1, i + n))
        if type(reply) == 'table' and reply.err then
          return {index, position, done, reply.err}
        end
      end
      if not final then
        done = done + 1
        if seen then seen[position] = done end
      end
      index = index + 1
      i = i + 1 + n
    end
  end
  return nil
end

local function skip_nothing()
  return 0
end

-- The commands and keys after a header of h arguments: ARGV[#ARGV] is the number of keys,
-- which come just before it. Adds the keys to the generation's key set; returns the range of
-- the commands.
local function queued(h, key_set)
  local keys = tonumber(ARGV[#ARGV])
  local first, last = #ARGV - keys, #ARGV - 1
  local from = first
  while from <= last do
    local upto = math.min(from + 999, last)
    redis.call('SADD', key_set, unpack(ARGV, from, upto))
    from = upto + 1
  end
  return h + 1, first - 1
end

-- nil when the checkpoint of gen (both fields) is the expected one, else the 'fenced' reply.
local function fence(checkpoints, gen, expected)
  local found = get_checkpoint(checkpoints, gen)
  if found == expected then return nil end
  if not found then return {'fenced'} end
  return {'fenced', found}
end

-- The partial marker of gen, when it was left at checkpoint, else nil. For a totally ordered
-- checkpoint, {p = the position of the event that failed, j = how many of its commands ran}:
-- every command of the events before it ran. For a per-partition one (the events of a batch
-- are not in position order), {done = position -> how many of that event's commands ran}.
local function partial(progress, gen, checkpoint)
  local marker = redis.call('HGET', progress, gen .. ':partial')
  if not marker then return nil end
  local c, rest = string.match(marker, '^(%S+) (.*)$')
  if c ~= checkpoint then return nil end
  if partitions_of(c) then
    local done = {}
    for q, d in string.gmatch(rest, '(%d+):(%d+)') do done[q] = tonumber(d) end
    return {done = done}
  end
  local p, j = string.match(rest, '^(%d+) (%d+)$')
  if not p then return nil end
  return {p = p, j = tonumber(j)}
end

-- What run skips after a failed run that left marker.
local function skipper(marker)
  if not marker then return skip_nothing end
  if marker.done then
    return function(position) return marker.done[position] or 0 end
  end
  return function(position)
    if lt(position, marker.p) then return math.huge end
    if position == marker.p then return marker.j end
    return 0
  end
end

-- A per-partition marker's events, in position order: 'position:done,...'.
local function encode_done(done)
  local positions = {}
  for q in pairs(done) do positions[#positions + 1] = q end
  table.sort(positions, lt)
  for k, q in ipairs(positions) do positions[k] = q .. ':' .. done[q] end
  return table.concat(positions, ',')
end

-- Records how far a failed run from checkpoint got: what marker said ran, and this run's
-- progress (failed, and for a per-partition checkpoint seen), the further of the two.
local function record(progress, gen, checkpoint, marker, failed, seen)
  local field = gen .. ':partial'
  if seen then
    local done = marker and marker.done or {}
    for q, d in pairs(seen) do
      if not done[q] or done[q] < d then done[q] = d end
    end
    local text = encode_done(done)
    if text ~= '' then redis.call('HSET', progress, field, checkpoint .. ' ' .. text) end
    return
  end
  -- (A final command can fail after events that the marker already covers.)
  local fp, fj = failed[2], failed[3]
  if not marker or lt(marker.p, fp) or (marker.p == fp and marker.j < fj) then
    redis.call('HSET', progress, field, checkpoint .. ' ' .. fp .. ' ' .. fj)
  end
end

-- Moves the checkpoint of gen from `from` to `to`, and the partial marker left at `from` with
-- it while it still says something: while the checkpoint moves forward (one event at a time,
-- when the runner looks for the failing event), not past the event that failed (totally
-- ordered), or until every event it names was applied (seen) or parked (`to` names its
-- position) (per partition). Any other move (a reset) drops it.
local function move(checkpoints, progress, gen, from, to, marker, seen)
  set_checkpoint(checkpoints, gen, to)
  local field = gen .. ':partial'
  if marker and marker.done and reached(to, from) then
    local done = marker.done
    for q in pairs(seen or {}) do done[q] = nil end
    for q in string.gmatch(partitions_of(to), ':(%d+)') do done[q] = nil end
    local text = encode_done(done)
    if text ~= '' then
      redis.call('HSET', progress, field, to .. ' ' .. text)
      return
    end
  elseif marker and marker.p and not partitions_of(to) and not lt(to, from)
      and lt(to, marker.p) then
    redis.call('HSET', progress, field, to .. ' ' .. marker.p .. ' ' .. marker.j)
    return
  end
  redis.call('HDEL', progress, field)
end

-- Makes gen a dead generation: no checkpoint, no progress, no dead letters. Its keys are
-- deleted afterwards, in batches.
local function retire(checkpoints, progress, dead, gen)
  redis.call('HDEL', checkpoints, gen, gen .. ':partitions')
  redis.call('HDEL', progress, gen .. ':partial')
  local letters = redis.call('HGETALL', dead)
  local g = tonumber(gen)
  for k = 1, #letters, 2 do
    local ok, letter = pcall(cjson.decode, letters[k + 1])
    if ok and type(letter) == 'table' and letter.generation == g then
      redis.call('HDEL', dead, letters[k])
    end
  end
end
"#;

/// KEYS: checkpoints, progress, key set, dead, dead-seq.
/// ARGV: generation, expected checkpoint, new checkpoint, dead letter JSON or '', queued.
const APPLY: &str = r#"
local gen, expected, to = ARGV[1], ARGV[2], ARGV[3]
local stop = fence(KEYS[1], gen, expected)
if stop then return stop end
local first, last = queued(4, KEYS[3])
local marker = partial(KEYS[2], gen, expected)
local seen = nil
if partitions_of(expected) then seen = {} end
local failed = run(first, last, skipper(marker), seen)
if failed then
  record(KEYS[2], gen, expected, marker, failed, seen)
  return {'error', failed[1], failed[4]}
end
local id = 0
if ARGV[4] ~= '' then
  id = redis.call('INCR', KEYS[5])
  redis.call('HSET', KEYS[4], id, ARGV[4])
end
move(KEYS[1], KEYS[2], gen, expected, to, marker, seen)
return {'ok', id}
"#;

/// KEYS: projection, checkpoints, progress, generations, key set.
/// ARGV: generation, checkpoint, live ('1' or '0'), queued.
const CREATE: &str = r#"
local gen = ARGV[1]
local live = redis.call('HGET', KEYS[1], 'live_generation')
if ARGV[3] == '1' and live then
  return {'invalid', 'it is already registered, with live generation ' .. live}
end
if live == gen then return {'invalid', 'generation ' .. gen .. ' is live'} end
if redis.call('HEXISTS', KEYS[2], gen) == 1 then
  return {'invalid', 'generation ' .. gen .. ' exists'}
end
redis.call('SADD', KEYS[4], gen)
local first, last = queued(3, KEYS[5])
local failed = run(first, last, skip_nothing)
if failed then return {'error', failed[1], failed[4]} end
set_checkpoint(KEYS[2], gen, ARGV[2])
redis.call('HDEL', KEYS[3], gen .. ':partial')
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[1], 'live_generation', gen, 'paused', '0')
end
return {'ok'}
"#;

/// KEYS: projection, checkpoints, progress, dead. ARGV: from, to.
const SWAP: &str = r#"
local from, to = ARGV[1], ARGV[2]
local live = redis.call('HGET', KEYS[1], 'live_generation')
if live == to and redis.call('HEXISTS', KEYS[2], from) == 0 then return {'ok'} end
if live ~= from then
  return {'invalid', 'generation ' .. from .. ' is not the live one (' .. tostring(live) .. ')'}
end
if redis.call('HEXISTS', KEYS[2], to) == 0 then
  return {'invalid', 'generation ' .. to .. ' does not exist'}
end
redis.call('HSET', KEYS[1], 'live_generation', to)
retire(KEYS[2], KEYS[3], KEYS[4], from)
return {'ok'}
"#;

/// KEYS: projection, checkpoints, progress, dead. ARGV: generation.
const DROP: &str = r#"
if redis.call('HGET', KEYS[1], 'live_generation') == ARGV[1] then
  return {'invalid', 'generation ' .. ARGV[1] .. ' is live'}
end
retire(KEYS[2], KEYS[3], KEYS[4], ARGV[1])
return {'ok'}
"#;

/// Deletes one batch of a dead generation's keys. KEYS: key set, generations, checkpoints.
/// ARGV: generation, batch size. Returns the keys left, or -1 when the generation is alive.
const PURGE: &str = r#"
if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then return -1 end
local keys = redis.call('SPOP', KEYS[1], tonumber(ARGV[2]))
if #keys > 0 then redis.call('UNLINK', unpack(keys)) end
local left = redis.call('SCARD', KEYS[1])
if left == 0 then redis.call('SREM', KEYS[2], ARGV[1]) end
return left
"#;

/// KEYS: dead, checkpoints, key set. ARGV: id, the dead letter as read, as retried, generation,
/// queued.
const RETRY: &str = r#"
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return {'changed'} end
if redis.call('HEXISTS', KEYS[2], ARGV[4]) == 0 then
  return {'invalid', 'generation ' .. ARGV[4] .. ' does not exist'}
end
local first, last = queued(4, KEYS[3])
local failed = run(first, last, skip_nothing)
if failed then return {'error', failed[1], failed[4]} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return {'ok'}
"#;

/// KEYS: dead. ARGV: id, the dead letter as read, its new value.
const SET_DEAD_LETTER: &str = r#"
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return {'changed'} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return {'ok'}
"#;

/// KEYS: projection. ARGV: paused ('1' or '0').
const SET_PAUSED: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'paused', ARGV[1]) end
return {'ok'}
"#;

/// KEYS: schema. ARGV: the version this code writes.
const MIGRATE: &str = r#"
local found = redis.call('GET', KEYS[1])
if found then
  local version = tonumber(found)
  if not version then return {'invalid', found} end
  if version > tonumber(ARGV[1]) then return {'newer', found} end
end
redis.call('SET', KEYS[1], ARGV[1])
return {'ok'}
"#;

/// A checkpoint as the scripts take it (see [`PRELUDE`]).
fn script_checkpoint(checkpoint: &Checkpoint) -> String {
    match checkpoint.to_columns() {
        (position, None) => position.to_string(),
        (position, Some(partitions)) => format!("{position}/{partitions}"),
    }
}

/// The checkpoint of `generation` of `name` from its stored fields: the position and, for a
/// per-partition checkpoint, the partitions.
fn stored_checkpoint(
    name: &ProjectionName,
    generation: u64,
    position: &str,
    partitions: Option<&str>,
) -> Result<Checkpoint, SinkError> {
    let invalid = |what: String| {
        SinkError::Invalid(format!(
            "redis: the checkpoint of {name} generation {generation} cannot be read: {what} \
             (it was changed outside Factlog)"
        ))
    };
    let position = position
        .parse::<Position>()
        .map_err(|_| invalid(format!("its position is {position:?}")))?;
    Checkpoint::from_columns(position, partitions).map_err(|e| invalid(e.to_string()))
}

/// A checkpoint as a script returns it (see [`PRELUDE`]).
fn checkpoint_from_script(
    name: &ProjectionName,
    generation: u64,
    text: &str,
) -> Result<Checkpoint, SinkError> {
    match text.split_once('/') {
        None => stored_checkpoint(name, generation, text, None),
        Some((position, partitions)) => {
            stored_checkpoint(name, generation, position, Some(partitions))
        }
    }
}

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}{body}"))
}

static APPLY_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(APPLY));
static CREATE_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(CREATE));
static SWAP_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(SWAP));
static DROP_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(DROP));
static PURGE_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(PURGE));
static RETRY_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(RETRY));
static SET_DEAD_LETTER_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(SET_DEAD_LETTER));
static SET_PAUSED_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(SET_PAUSED));
static MIGRATE_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(MIGRATE));

/// The Redis sink. Cheap to clone; every clone shares one multiplexed connection, opened again
/// after a connection error.
#[derive(Clone)]
pub struct RedisSink {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    connection: Mutex<Option<MultiplexedConnection>>,
    prefix: String,
}

impl fmt::Debug for RedisSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSink")
            .field("key_prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

/// What a projection writes to in Redis: a queue of commands that run in the batch's script,
/// and the names of the keys of the generation being written.
///
/// ```no_run
/// # use factlog_projection::RedisUnit;
/// # fn handle(unit: &mut RedisUnit<'_>, stream: &str, amount: i64) {
/// let key = unit.key(&format!("balances:{stream}"));
/// unit.cmd("HINCRBY").arg(&key).arg("balance").arg(amount);
/// // Only the batch's last value matters:
/// unit.cmd_last(&key, "HSET").arg(&key).arg("last_amount").arg(amount);
/// // Once per batch is enough:
/// let accounts = unit.key("accounts");
/// unit.cmd_once("SADD").arg(&accounts).arg(stream);
/// # }
/// ```
pub struct RedisUnit<'u> {
    projection: &'u ProjectionName,
    generation: u64,
    /// `<prefix>rm:<name>:g<generation>:`
    key_base: String,
    /// The script call being built: the header, then the queued commands.
    out: Cmd,
    /// The command being built (returned by [`RedisUnit::cmd`] and the like), queued when the
    /// next one starts.
    scratch: Cmd,
    scratch_pending: Option<Queue>,
    /// The token of the command being built by [`RedisUnit::cmd_last`].
    scratch_token: String,
    /// The commands of [`RedisUnit::cmd_once`] and [`RedisUnit::cmd_last`], with the event that
    /// queued them last: they run after all the others.
    finals: Vec<(Cmd, usize)>,
    /// The commands of [`RedisUnit::cmd_once`], packed.
    once: HashSet<Vec<u8>>,
    /// The tokens of [`RedisUnit::cmd_last`] and the place of their command in `finals`.
    last: HashMap<String, usize>,
    packed: Vec<u8>,
    /// The event being handled: its index in the batch and its position.
    event: usize,
    position: u64,
    /// Whether a command of the event was queued (the first one carries the position).
    event_started: bool,
    /// The event of each queued command.
    command_events: Vec<usize>,
    keys: HashSet<String>,
    /// The first command that cannot be sent, with its event.
    invalid: Option<(usize, String)>,
}

impl fmt::Debug for RedisUnit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisUnit")
            .field("projection", self.projection)
            .field("generation", &self.generation)
            .field("commands", &self.command_events.len())
            .field("final_commands", &self.finals.len())
            .finish_non_exhaustive()
    }
}

impl<'u> RedisUnit<'u> {
    fn new(sink: &RedisSink, projection: &'u ProjectionName, generation: u64, out: Cmd) -> Self {
        Self {
            projection,
            generation,
            key_base: format!("{}rm:{projection}:g{generation}:", sink.inner.prefix),
            out,
            scratch: Cmd::new(),
            scratch_pending: None,
            scratch_token: String::new(),
            finals: Vec::new(),
            once: HashSet::new(),
            last: HashMap::new(),
            packed: Vec::new(),
            event: 0,
            position: 0,
            event_started: false,
            command_events: Vec::new(),
            keys: HashSet::new(),
            invalid: None,
        }
    }

    pub fn projection(&self) -> &ProjectionName {
        self.projection
    }

    /// The generation being written.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The key `suffix` of the generation being written: `<prefix>rm:<name>:g<gen>:<suffix>`.
    /// Use it for every key the projection writes: the keys it hands out are deleted with their
    /// generation (after a rebuild), and readers find them with [`RedisSink::live_key`].
    pub fn key(&mut self, suffix: &str) -> String {
        let mut key = String::with_capacity(self.key_base.len() + suffix.len());
        key.push_str(&self.key_base);
        key.push_str(suffix);
        if !self.keys.contains(&key) {
            self.keys.insert(key.clone());
        }
        key
    }

    /// Queues the command `name`; add its arguments to what this returns:
    /// `unit.cmd("HSET").arg(&key).arg("field").arg(value);`. It runs in the batch's script,
    /// after the commands queued before it. Its reply is not available.
    pub fn cmd(&mut self, name: &str) -> &mut Cmd {
        self.start(name, Queue::Now)
    }

    /// Queues a command built elsewhere (`redis::cmd("SET").arg(&key).arg(1)`), like
    /// [`RedisUnit::cmd`].
    pub fn command(&mut self, command: &Cmd) {
        self.flush();
        if self.check(command) {
            self.append(command);
        }
    }

    /// Queues the command `name` (like [`RedisUnit::cmd`]) to run once per batch however many
    /// of its events queue it with the same arguments, after the batch's other commands: for
    /// idempotent commands whose effect no command of the projection undoes, such as adding a
    /// member to a set that only grows. It may run again after a failure of the batch.
    pub fn cmd_once(&mut self, name: &str) -> &mut Cmd {
        self.start(name, Queue::Once)
    }

    /// Queues the command `name` (like [`RedisUnit::cmd`]) in place of the one queued earlier in
    /// the batch with the same `token`, to run after the batch's other commands: for idempotent
    /// writes of which only the batch's last one matters, such as setting a row's latest values
    /// (`HSET`) with its key as token. The batch's final commands run in the order their tokens
    /// were first used; each may run again after a failure of the batch.
    pub fn cmd_last(&mut self, token: &str, name: &str) -> &mut Cmd {
        self.flush();
        self.scratch_token.clear();
        self.scratch_token.push_str(token);
        self.start(name, Queue::Last)
    }

    fn start(&mut self, name: &str, queue: Queue) -> &mut Cmd {
        self.flush();
        self.scratch.clear();
        self.scratch.arg(name);
        self.scratch_pending = Some(queue);
        &mut self.scratch
    }

    /// Starts the commands of the event at `index` in the batch.
    fn begin(&mut self, index: usize, position: Position) {
        self.flush();
        self.event = index;
        self.position = position.raw();
        self.event_started = false;
    }

    /// Queues the command being built.
    fn flush(&mut self) {
        let Some(queue) = self.scratch_pending.take() else {
            return;
        };
        let scratch = std::mem::take(&mut self.scratch);
        if !self.check(&scratch) {
            self.scratch = scratch;
            return;
        }
        match queue {
            Queue::Now => {
                self.append(&scratch);
                self.scratch = scratch;
            }
            Queue::Once => {
                self.packed.clear();
                scratch.write_packed_command(&mut self.packed);
                if !self.once.contains(&self.packed) {
                    self.once.insert(self.packed.clone());
                    self.finals.push((scratch.clone(), self.event));
                }
                self.scratch = scratch;
            }
            Queue::Last => match self.last.get(self.scratch_token.as_str()) {
                // The replaced command becomes the next scratch: no allocation.
                Some(&i) => {
                    let (replaced, event) = &mut self.finals[i];
                    self.scratch = std::mem::replace(replaced, scratch);
                    *event = self.event;
                }
                None => {
                    self.last
                        .insert(self.scratch_token.clone(), self.finals.len());
                    self.finals.push((scratch, self.event));
                }
            },
        }
    }

    /// Whether `command` can be sent; records the first one that cannot, with its event.
    fn check(&mut self, command: &Cmd) -> bool {
        let args = command.args_iter();
        let count = args.len();
        let problem = if count == 0 {
            Some("an empty Redis command".to_string())
        } else if count > COMMAND_ARGS_MAX {
            Some(format!(
                "a Redis command with {count} arguments, more than the {COMMAND_ARGS_MAX} a \
                 script can pass"
            ))
        } else if args.clone().any(|a| matches!(a, Arg::Cursor)) {
            Some("a Redis command with a cursor argument".to_string())
        } else {
            None
        };
        match problem {
            None => true,
            Some(problem) => {
                self.invalid.get_or_insert((self.event, problem));
                false
            }
        }
    }

    /// Writes a command of the current event to the script call.
    fn append(&mut self, command: &Cmd) {
        let count = command.args_iter().len();
        if self.event_started {
            self.out.arg(count);
        } else {
            self.event_started = true;
            self.out.arg(-(count as i64)).arg(self.position);
        }
        write_args(&mut self.out, command);
        self.command_events.push(self.event);
    }

    /// The script call, complete, and the event of each command; or the first invalid command.
    fn finish(mut self) -> Result<(Cmd, Vec<usize>), (usize, String)> {
        self.flush();
        if let Some(invalid) = self.invalid {
            return Err(invalid);
        }
        if !self.finals.is_empty() {
            // The final commands, after a 0.
            self.out.arg(0);
            for (command, event) in &self.finals {
                self.out.arg(command.args_iter().len());
                write_args(&mut self.out, command);
                self.command_events.push(*event);
            }
        }
        let count = self.keys.len();
        for key in &self.keys {
            self.out.arg(key.as_str());
        }
        self.out.arg(count);
        Ok((self.out, self.command_events))
    }
}

fn write_args(out: &mut Cmd, command: &Cmd) {
    for arg in command.args_iter() {
        if let Arg::Simple(bytes) = arg {
            out.arg(bytes);
        }
    }
}

/// Where the command being built goes.
#[derive(Debug, Clone, Copy)]
enum Queue {
    /// [`RedisUnit::cmd`]
    Now,
    /// [`RedisUnit::cmd_once`]
    Once,
    /// [`RedisUnit::cmd_last`]
    Last,
}

/// Keys of the runtime for one projection.
struct Keys {
    projection: String,
    checkpoints: String,
    progress: String,
    dead: String,
    dead_seq: String,
    generations: String,
}

/// A dead letter as stored (the hash field is its id).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredDeadLetter {
    generation: u64,
    position: u64,
    event_id: String,
    stream: String,
    version: u64,
    event_type: String,
    data: Option<String>,
    error: String,
    attempts: u32,
    first_failed_at: i64,
    last_failed_at: i64,
    status: String,
}

impl StoredDeadLetter {
    fn new(generation: u64, dead_letter: &NewDeadLetter) -> Self {
        let event = &dead_letter.event;
        Self {
            generation,
            position: event.position.raw(),
            event_id: event.id.to_string(),
            stream: event.stream.as_str().to_string(),
            version: event.version,
            event_type: event.event_type.as_str().to_string(),
            data: dead_letter.data_text().map(str::to_string),
            error: dead_letter.error.clone(),
            attempts: dead_letter.attempts,
            first_failed_at: dead_letter.first_failed_at.unix_micros(),
            last_failed_at: dead_letter.last_failed_at.unix_micros(),
            status: DeadLetterStatus::Parked.as_str().to_string(),
        }
    }

    fn parse(id: &str, json: &str) -> Result<(u64, Self), SinkError> {
        let id = id
            .parse::<u64>()
            .map_err(|_| SinkError::Invalid(format!("redis: a dead letter has the id {id:?}")))?;
        let stored = serde_json::from_str(json)
            .map_err(|e| SinkError::Invalid(format!("redis: dead letter {id}: {e}")))?;
        Ok((id, stored))
    }

    fn json(&self) -> String {
        serde_json::to_string(self).expect("a dead letter serializes")
    }

    fn status(&self) -> DeadLetterStatus {
        DeadLetterStatus::parse(&self.status).unwrap_or(DeadLetterStatus::Parked)
    }

    fn into_dead_letter(self, id: u64) -> Result<DeadLetter, SinkError> {
        let status = self.status();
        let event_id = self
            .event_id
            .parse::<EventId>()
            .map_err(|e| SinkError::Invalid(format!("redis: dead letter {id}: {e}")))?;
        Ok(DeadLetter {
            id,
            generation: self.generation,
            position: Position::from_raw(self.position),
            event_id,
            stream: self.stream,
            version: self.version,
            event_type: self.event_type,
            data: self.data,
            error: self.error,
            attempts: self.attempts,
            first_failed_at: Timestamp::from_unix_micros(self.first_failed_at),
            last_failed_at: Timestamp::from_unix_micros(self.last_failed_at),
            status,
        })
    }
}

/// A script's reply: a status word and its values.
struct Reply(Vec<Value>);

impl Reply {
    fn parse(value: Value) -> Result<Self, SinkError> {
        match value {
            Value::Array(values) if !values.is_empty() => Ok(Self(values)),
            other => Err(SinkError::Invalid(format!(
                "redis: unexpected script reply {other:?}"
            ))),
        }
    }

    fn status(&self) -> String {
        self.text(0).unwrap_or_default()
    }

    fn text(&self, index: usize) -> Option<String> {
        self.0
            .get(index)
            .and_then(|v| redis::from_redis_value::<String>(v).ok())
    }

    fn int(&self, index: usize) -> Option<i64> {
        self.0
            .get(index)
            .and_then(|v| redis::from_redis_value::<i64>(v).ok())
    }

    fn unexpected(&self) -> SinkError {
        SinkError::Invalid(format!("redis: unexpected script reply {:?}", self.0))
    }
}

/// Error codes of the server's state, not of a command: retrying later may work.
fn transient_code(code: &str) -> bool {
    matches!(
        code,
        "BUSY"
            | "OOM"
            | "LOADING"
            | "READONLY"
            | "MISCONF"
            | "MASTERDOWN"
            | "NOREPLICAS"
            | "TRYAGAIN"
            | "CLUSTERDOWN"
    )
}

fn is_unavailable(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || matches!(
            error.kind(),
            ErrorKind::BusyLoadingError
                | ErrorKind::TryAgain
                | ErrorKind::ClusterDown
                | ErrorKind::MasterDown
                | ErrorKind::ReadOnly
        )
        || error.code().is_some_and(transient_code)
}

fn sink_error(error: &RedisError) -> SinkError {
    if is_unavailable(error) {
        SinkError::Unavailable(format!("redis: {error}"))
    } else {
        SinkError::Invalid(format!("redis: {error}"))
    }
}

/// The error of a queued command that failed inside a script.
fn command_error(index: Option<usize>, message: String) -> ApplyError {
    let code = message.split_whitespace().next().unwrap_or_default();
    if transient_code(code) {
        ApplyError::Sink(SinkError::Unavailable(format!("redis: {message}")))
    } else {
        ApplyError::Event {
            index,
            message: format!("redis: {message}"),
            permanent: true,
        }
    }
}

fn check_prefix(prefix: &str) -> Result<(), SinkError> {
    let valid = !prefix.is_empty()
        && prefix.len() <= KEY_PREFIX_BYTES_MAX
        && prefix.bytes().all(|b| b.is_ascii_graphic());
    if valid {
        Ok(())
    } else {
        Err(SinkError::Invalid(format!(
            "invalid Redis key prefix {prefix:?}: use 1 to {KEY_PREFIX_BYTES_MAX} printable \
             ASCII characters without spaces"
        )))
    }
}

/// An `EVALSHA` of `script` with `keys`; its arguments follow.
fn evalsha(script: &Script, keys: &[&str]) -> Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(keys.len()).arg(keys);
    cmd
}

impl RedisSink {
    /// Connects to the Redis server at `url` (`redis://host:port/db`) and brings the runtime's
    /// keys under `key_prefix` up to date. Every key the sink writes starts with `key_prefix`.
    pub async fn connect(url: &str, key_prefix: &str) -> Result<Self, SinkError> {
        check_prefix(key_prefix)?;
        let client = redis::Client::open(url)
            .map_err(|e| SinkError::Invalid(format!("redis: invalid URL: {e}")))?;
        let sink = Self {
            inner: Arc::new(Inner {
                client,
                connection: Mutex::new(None),
                prefix: key_prefix.to_string(),
            }),
        };
        sink.migrate().await?;
        Ok(sink)
    }

    pub fn key_prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The key `suffix` of generation `generation` of the projection `name`.
    pub fn generation_key(&self, name: &ProjectionName, generation: u64, suffix: &str) -> String {
        format!("{}rm:{name}:g{generation}:{suffix}", self.inner.prefix)
    }

    /// The key `suffix` of the projection's live generation, for readers: the key its
    /// projection wrote as `unit.key(suffix)`.
    pub async fn live_key(&self, name: &ProjectionName, suffix: &str) -> Result<String, SinkError> {
        let live: Option<String> = self
            .query(
                redis::cmd("HGET")
                    .arg(self.keys(name).projection)
                    .arg("live_generation"),
            )
            .await?;
        let live = live.ok_or_else(|| {
            SinkError::Invalid(format!(
                "projection {name} is not registered under {}",
                self.inner.prefix
            ))
        })?;
        let generation = live.parse::<u64>().map_err(|_| {
            SinkError::Invalid(format!("redis: {name} has live generation {live:?}"))
        })?;
        Ok(self.generation_key(name, generation, suffix))
    }

    fn keys(&self, name: &ProjectionName) -> Keys {
        let p = &self.inner.prefix;
        Keys {
            projection: format!("{p}projection:{name}"),
            checkpoints: format!("{p}checkpoint:{name}"),
            progress: format!("{p}progress:{name}"),
            dead: format!("{p}dead:{name}"),
            dead_seq: format!("{p}dead-seq:{name}"),
            generations: format!("{p}generations:{name}"),
        }
    }

    fn key_set(&self, name: &ProjectionName, generation: u64) -> String {
        format!("{}generations:{name}:{generation}:keys", self.inner.prefix)
    }

    async fn connection(&self) -> Result<MultiplexedConnection, SinkError> {
        if let Some(connection) = self.inner.connection.lock().clone() {
            return Ok(connection);
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(CONNECTION_TIMEOUT)
            .set_response_timeout(RESPONSE_TIMEOUT);
        let connection = self
            .inner
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| sink_error(&e))?;
        *self.inner.connection.lock() = Some(connection.clone());
        Ok(connection)
    }

    /// The sink's error for `error`; forgets the connection when it is broken.
    fn failed(&self, error: RedisError) -> SinkError {
        if error.is_io_error() || error.is_timeout() || error.is_unrecoverable_error() {
            *self.inner.connection.lock() = None;
        }
        sink_error(&error)
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &Cmd) -> Result<T, SinkError> {
        let mut connection = self.connection().await?;
        cmd.query_async(&mut connection)
            .await
            .map_err(|e| self.failed(e))
    }

    async fn query_pipeline<T: redis::FromRedisValue>(
        &self,
        pipeline: &redis::Pipeline,
    ) -> Result<T, SinkError> {
        let mut connection = self.connection().await?;
        pipeline
            .query_async(&mut connection)
            .await
            .map_err(|e| self.failed(e))
    }

    /// Runs a script call built by [`evalsha`], loading the script when Redis does not have it.
    async fn eval_value(&self, script: &Script, cmd: &Cmd) -> Result<Value, SinkError> {
        let mut connection = self.connection().await?;
        match cmd.query_async::<Value>(&mut connection).await {
            Err(e) if e.kind() == ErrorKind::NoScriptError => {
                script
                    .prepare_invoke()
                    .load_async(&mut connection)
                    .await
                    .map_err(|e| self.failed(e))?;
                cmd.query_async(&mut connection)
                    .await
                    .map_err(|e| self.failed(e))
            }
            result => result.map_err(|e| self.failed(e)),
        }
    }

    async fn eval(&self, script: &Script, cmd: &Cmd) -> Result<Reply, SinkError> {
        Reply::parse(self.eval_value(script, cmd).await?)
    }

    /// Runs the apply script (a fenced checkpoint move with queued commands and, for a park,
    /// a dead letter) and reads its reply.
    async fn move_checkpoint(
        &self,
        target: &Target,
        cmd: &Cmd,
        command_events: &[usize],
    ) -> Result<(), ApplyError> {
        let reply = self.eval(&APPLY_SCRIPT, cmd).await?;
        match reply.status().as_str() {
            "ok" => Ok(()),
            "fenced" => {
                let found = match reply.text(1) {
                    None => None,
                    Some(text) => Some(checkpoint_from_script(
                        &target.name,
                        target.generation,
                        &text,
                    )?),
                };
                Err(ApplyError::Fenced {
                    name: target.name.clone(),
                    generation: target.generation,
                    expected: Some(target.checkpoint.clone()),
                    found,
                })
            }
            "error" => {
                let index = reply
                    .int(1)
                    .and_then(|i| command_events.get(i as usize).copied());
                Err(command_error(index, reply.text(2).unwrap_or_default()))
            }
            _ => Err(reply.unexpected().into()),
        }
    }

    /// The apply script's call for `target`, up to its queued commands.
    fn apply_header(&self, target: &Target, to: &Checkpoint, dead_letter: &str) -> Cmd {
        let name = &target.name;
        let keys = self.keys(name);
        let key_set = self.key_set(name, target.generation);
        let mut cmd = evalsha(
            &APPLY_SCRIPT,
            &[
                &keys.checkpoints,
                &keys.progress,
                &key_set,
                &keys.dead,
                &keys.dead_seq,
            ],
        );
        cmd.arg(target.generation)
            .arg(script_checkpoint(&target.checkpoint))
            .arg(script_checkpoint(to))
            .arg(dead_letter);
        cmd
    }

    /// Makes `generation` dead (no checkpoint, progress nor dead letters), unless it is live.
    async fn retire(&self, name: &ProjectionName, generation: u64) -> Result<(), SinkError> {
        let keys = self.keys(name);
        let mut cmd = evalsha(
            &DROP_SCRIPT,
            &[
                &keys.projection,
                &keys.checkpoints,
                &keys.progress,
                &keys.dead,
            ],
        );
        cmd.arg(generation);
        let reply = self.eval(&DROP_SCRIPT, &cmd).await?;
        match reply.status().as_str() {
            "ok" => Ok(()),
            "invalid" => Err(SinkError::Invalid(format!(
                "cannot drop generation {generation} of {name}: {}",
                reply.text(1).unwrap_or_default()
            ))),
            _ => Err(reply.unexpected()),
        }
    }

    /// Deletes the keys of a dead generation, a batch per script.
    async fn purge(&self, name: &ProjectionName, generation: u64) -> Result<(), SinkError> {
        let keys = self.keys(name);
        let key_set = self.key_set(name, generation);
        let mut cmd = evalsha(
            &PURGE_SCRIPT,
            &[&key_set, &keys.generations, &keys.checkpoints],
        );
        cmd.arg(generation).arg(PURGE_BATCH);
        loop {
            let left: i64 =
                redis::from_owned_redis_value(self.eval_value(&PURGE_SCRIPT, &cmd).await?)
                    .map_err(|e| SinkError::Invalid(format!("redis: {e}")))?;
            if left <= 0 {
                return Ok(());
            }
        }
    }

    /// Deletes the keys of every dead generation of the projection (left by a deletion that a
    /// crash cut short, or by a failed creation).
    async fn collect(&self, name: &ProjectionName) -> Result<(), SinkError> {
        let keys = self.keys(name);
        let (generations, alive): (Vec<String>, Vec<String>) = self
            .query_pipeline(
                redis::pipe()
                    .atomic()
                    .cmd("SMEMBERS")
                    .arg(&keys.generations)
                    .cmd("HKEYS")
                    .arg(&keys.checkpoints),
            )
            .await?;
        for generation in generations {
            if alive.contains(&generation) {
                continue;
            }
            if let Ok(generation) = generation.parse::<u64>() {
                self.purge(name, generation).await?;
            }
        }
        Ok(())
    }

    /// [`Self::collect`], logging instead of failing: what it leaves is deleted next time.
    async fn collect_logged(&self, name: &ProjectionName) {
        if let Err(e) = self.collect(name).await {
            tracing::warn!(projection = %name, "deleting dropped generations' keys: {e}");
        }
    }

    async fn dead_letter(
        &self,
        name: &ProjectionName,
        id: u64,
    ) -> Result<Option<(String, StoredDeadLetter)>, SinkError> {
        let json: Option<String> = self
            .query(redis::cmd("HGET").arg(self.keys(name).dead).arg(id))
            .await?;
        match json {
            None => Ok(None),
            Some(json) => {
                let (_, stored) = StoredDeadLetter::parse(&id.to_string(), &json)?;
                Ok(Some((json, stored)))
            }
        }
    }

    /// The dead letter `id`, which must be parked.
    async fn parked(
        &self,
        name: &ProjectionName,
        id: u64,
    ) -> Result<(String, StoredDeadLetter), SinkError> {
        let (json, stored) = self
            .dead_letter(name, id)
            .await?
            .ok_or(SinkError::DeadLetterNotFound(id))?;
        let status = stored.status();
        if status != DeadLetterStatus::Parked {
            return Err(SinkError::DeadLetterNotParked {
                id,
                status: status.as_str(),
            });
        }
        Ok((json, stored))
    }

    /// Replaces the dead letter `id` if it is still `old`. False when it changed meanwhile.
    async fn set_dead_letter(
        &self,
        name: &ProjectionName,
        id: u64,
        old: &str,
        new: &str,
    ) -> Result<bool, SinkError> {
        let mut cmd = evalsha(&SET_DEAD_LETTER_SCRIPT, &[&self.keys(name).dead]);
        cmd.arg(id).arg(old).arg(new);
        let reply = self.eval(&SET_DEAD_LETTER_SCRIPT, &cmd).await?;
        match reply.status().as_str() {
            "ok" => Ok(true),
            "changed" => Ok(false),
            _ => Err(reply.unexpected()),
        }
    }
}

fn changing(id: u64) -> SinkError {
    SinkError::Unavailable(format!(
        "dead letter {id} kept changing while it was being updated"
    ))
}

impl Sink for RedisSink {
    type Unit<'u> = RedisUnit<'u>;

    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn migrate(&self) -> Result<(), SinkError> {
        let schema = format!("{}schema", self.inner.prefix);
        let mut cmd = evalsha(&MIGRATE_SCRIPT, &[&schema]);
        cmd.arg(SCHEMA_VERSION);
        let reply = self.eval(&MIGRATE_SCRIPT, &cmd).await?;
        match reply.status().as_str() {
            "ok" => Ok(()),
            "newer" => Err(SinkError::Invalid(format!(
                "the projection keys under {} are at schema version {}, newer than this \
                 Factlog knows ({SCHEMA_VERSION}); upgrade Factlog",
                self.inner.prefix,
                reply.text(1).unwrap_or_default()
            ))),
            "invalid" => Err(SinkError::Invalid(format!(
                "redis: {schema} holds {:?}, not a schema version",
                reply.text(1).unwrap_or_default()
            ))),
            _ => Err(reply.unexpected()),
        }
    }

    async fn load(&self, name: &ProjectionName) -> Result<Option<Stored>, SinkError> {
        let keys = self.keys(name);
        let (projection, checkpoints): (HashMap<String, String>, HashMap<String, String>) = self
            .query_pipeline(
                redis::pipe()
                    .atomic()
                    .cmd("HGETALL")
                    .arg(&keys.projection)
                    .cmd("HGETALL")
                    .arg(&keys.checkpoints),
            )
            .await?;
        let Some(live) = projection.get("live_generation") else {
            return Ok(None);
        };
        let invalid = |what: &str, value: &str| {
            SinkError::Invalid(format!("redis: {name} has {what} {value:?}"))
        };
        let live_generation = live
            .parse::<u64>()
            .map_err(|_| invalid("live generation", live))?;
        // `<gen>` holds the position, `<gen>:partitions` the partitions when there are some.
        let mut positions: BTreeMap<u64, &str> = BTreeMap::new();
        let mut partitions: BTreeMap<u64, &str> = BTreeMap::new();
        for (field, value) in &checkpoints {
            let (generation, into) = match field.strip_suffix(":partitions") {
                Some(generation) => (generation, &mut partitions),
                None => (field.as_str(), &mut positions),
            };
            let generation = generation
                .parse::<u64>()
                .map_err(|_| invalid("a checkpoint field", field))?;
            into.insert(generation, value);
        }
        if let Some(generation) = partitions.keys().find(|g| !positions.contains_key(g)) {
            return Err(SinkError::Invalid(format!(
                "redis: {name} has partitions but no position for the checkpoint of generation \
                 {generation}"
            )));
        }
        let checkpoints = positions
            .into_iter()
            .map(|(generation, position)| {
                let partitions = partitions.get(&generation).copied();
                let checkpoint = stored_checkpoint(name, generation, position, partitions)?;
                Ok((generation, checkpoint))
            })
            .collect::<Result<BTreeMap<_, _>, SinkError>>()?;
        Ok(Some(Stored {
            live_generation,
            paused: projection.get("paused").is_some_and(|p| p == "1"),
            checkpoints,
        }))
    }

    async fn create_generation<P: Projection<Self>>(
        &self,
        projection: Arc<P>,
        target: Target,
        live: bool,
    ) -> Result<(), ApplyError> {
        let name = &target.name;
        let generation = target.generation;
        // Leftovers of a generation of that number: made dead, then deleted in batches.
        self.retire(name, generation).await?;
        self.purge(name, generation).await?;
        let keys = self.keys(name);
        let key_set = self.key_set(name, generation);
        let mut cmd = evalsha(
            &CREATE_SCRIPT,
            &[
                &keys.projection,
                &keys.checkpoints,
                &keys.progress,
                &keys.generations,
                &key_set,
            ],
        );
        cmd.arg(generation)
            .arg(script_checkpoint(&target.checkpoint))
            .arg(if live { "1" } else { "0" });
        let mut unit = RedisUnit::new(self, name, generation, cmd);
        unit.begin(0, Position::START);
        projection
            .setup(&mut unit)
            .map_err(|e| ApplyError::event(None, e))?;
        let (cmd, _) = unit.finish().map_err(|(_, message)| ApplyError::Event {
            index: None,
            message,
            permanent: true,
        })?;
        let reply = self.eval(&CREATE_SCRIPT, &cmd).await?;
        match reply.status().as_str() {
            "ok" => {
                self.collect_logged(name).await;
                Ok(())
            }
            "error" => Err(command_error(None, reply.text(2).unwrap_or_default())),
            "invalid" => Err(SinkError::Invalid(format!(
                "cannot create generation {generation} of {name}: {}",
                reply.text(1).unwrap_or_default()
            ))
            .into()),
            _ => Err(reply.unexpected().into()),
        }
    }

    async fn apply<P: Projection<Self>>(
        &self,
        projection: Arc<P>,
        target: Target,
        events: Vec<RecordedEvent>,
        to: Checkpoint,
    ) -> Result<(), ApplyError> {
        let cmd = self.apply_header(&target, &to, "");
        let mut unit = RedisUnit::new(self, &target.name, target.generation, cmd);
        for (index, event) in events.iter().enumerate() {
            unit.begin(index, event.position);
            projection
                .handle(event, &mut unit)
                .map_err(|e| ApplyError::event(Some(index), e))?;
        }
        let (cmd, command_events) =
            unit.finish()
                .map_err(|(index, message)| ApplyError::Event {
                    index: Some(index),
                    message,
                    permanent: true,
                })?;
        self.move_checkpoint(&target, &cmd, &command_events).await
    }

    async fn park(
        &self,
        target: Target,
        dead_letter: NewDeadLetter,
        to: Checkpoint,
    ) -> Result<(), ApplyError> {
        let json = StoredDeadLetter::new(target.generation, &dead_letter).json();
        let mut cmd = self.apply_header(&target, &to, &json);
        cmd.arg(0);
        self.move_checkpoint(&target, &cmd, &[]).await
    }

    async fn set_checkpoint(&self, target: Target, to: Checkpoint) -> Result<(), ApplyError> {
        let mut cmd = self.apply_header(&target, &to, "");
        cmd.arg(0);
        self.move_checkpoint(&target, &cmd, &[]).await
    }

    async fn swap(&self, name: &ProjectionName, from: u64, to: u64) -> Result<(), SinkError> {
        let keys = self.keys(name);
        let mut cmd = evalsha(
            &SWAP_SCRIPT,
            &[
                &keys.projection,
                &keys.checkpoints,
                &keys.progress,
                &keys.dead,
            ],
        );
        cmd.arg(from).arg(to);
        let reply = self.eval(&SWAP_SCRIPT, &cmd).await?;
        match reply.status().as_str() {
            "ok" => {}
            "invalid" => {
                return Err(SinkError::Invalid(format!(
                    "cannot swap {name} from generation {from} to {to}: {}",
                    reply.text(1).unwrap_or_default()
                )));
            }
            _ => return Err(reply.unexpected()),
        }
        // `to` is live: deleting `from`'s keys can fail now without undoing the swap (the next
        // swap, drop or creation finishes it).
        if let Err(e) = self.purge(name, from).await {
            tracing::warn!(projection = %name, generation = from, "deleting the keys of the replaced generation: {e}");
            return Ok(());
        }
        self.collect_logged(name).await;
        Ok(())
    }

    async fn drop_generation(
        &self,
        name: &ProjectionName,
        generation: u64,
    ) -> Result<(), SinkError> {
        self.retire(name, generation).await?;
        self.purge(name, generation).await?;
        self.collect(name).await
    }

    async fn set_paused(&self, name: &ProjectionName, paused: bool) -> Result<(), SinkError> {
        let mut cmd = evalsha(&SET_PAUSED_SCRIPT, &[&self.keys(name).projection]);
        cmd.arg(if paused { "1" } else { "0" });
        let reply = self.eval(&SET_PAUSED_SCRIPT, &cmd).await?;
        match reply.status().as_str() {
            "ok" => Ok(()),
            _ => Err(reply.unexpected()),
        }
    }

    async fn dead_letters(&self, name: &ProjectionName) -> Result<Vec<DeadLetter>, SinkError> {
        let all: Vec<(String, String)> = self
            .query(redis::cmd("HGETALL").arg(self.keys(name).dead))
            .await?;
        let mut dead_letters = all
            .iter()
            .map(|(id, json)| {
                let (id, stored) = StoredDeadLetter::parse(id, json)?;
                stored.into_dead_letter(id)
            })
            .collect::<Result<Vec<_>, SinkError>>()?;
        dead_letters.sort_by_key(|d| d.id);
        Ok(dead_letters)
    }

    async fn retry_dead_letter<P: Projection<Self>>(
        &self,
        projection: Arc<P>,
        name: ProjectionName,
        generation: u64,
        id: u64,
        event: RecordedEvent,
    ) -> Result<(), ApplyError> {
        let keys = self.keys(&name);
        let key_set = self.key_set(&name, generation);
        for _ in 0..CAS_ATTEMPTS {
            let (old, mut stored) = self.parked(&name, id).await?;
            stored.status = DeadLetterStatus::Retried.as_str().to_string();
            let mut cmd = evalsha(&RETRY_SCRIPT, &[&keys.dead, &keys.checkpoints, &key_set]);
            cmd.arg(id).arg(&old).arg(stored.json()).arg(generation);
            let mut unit = RedisUnit::new(self, &name, generation, cmd);
            unit.begin(0, event.position);
            projection
                .handle(&event, &mut unit)
                .map_err(|e| ApplyError::event(Some(0), e))?;
            let (cmd, _) = unit.finish().map_err(|(_, message)| ApplyError::Event {
                index: Some(0),
                message,
                permanent: true,
            })?;
            let reply = self.eval(&RETRY_SCRIPT, &cmd).await?;
            match reply.status().as_str() {
                "ok" => return Ok(()),
                "changed" => continue,
                "error" => return Err(command_error(Some(0), reply.text(2).unwrap_or_default())),
                "invalid" => {
                    return Err(SinkError::Invalid(format!(
                        "cannot retry dead letter {id} of {name}: {}",
                        reply.text(1).unwrap_or_default()
                    ))
                    .into());
                }
                _ => return Err(reply.unexpected().into()),
            }
        }
        Err(changing(id).into())
    }

    async fn fail_dead_letter(
        &self,
        name: &ProjectionName,
        id: u64,
        error: String,
        at: Timestamp,
    ) -> Result<(), SinkError> {
        for _ in 0..CAS_ATTEMPTS {
            // Like an UPDATE of no row: nothing to do for a dead letter that is gone.
            let Some((old, mut stored)) = self.dead_letter(name, id).await? else {
                return Ok(());
            };
            stored.error.clone_from(&error);
            stored.attempts = stored.attempts.saturating_add(1);
            stored.last_failed_at = at.unix_micros();
            if self.set_dead_letter(name, id, &old, &stored.json()).await? {
                return Ok(());
            }
        }
        Err(changing(id))
    }

    async fn skip_dead_letter(
        &self,
        name: &ProjectionName,
        id: u64,
        _at: Timestamp,
    ) -> Result<(), SinkError> {
        for _ in 0..CAS_ATTEMPTS {
            let (old, mut stored) = self.parked(name, id).await?;
            stored.status = DeadLetterStatus::Skipped.as_str().to_string();
            if self.set_dead_letter(name, id, &old, &stored.json()).await? {
                return Ok(());
            }
        }
        Err(changing(id))
    }
}
