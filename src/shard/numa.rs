//! NUMA placement (`runtime.numa_node`, `--numa-node N`): the shards run on
//! one node's cores and take their memory from that node.
//!
//! Owns: reading the topology from sysfs (`/sys/devices/system/node/nodeN/
//! cpulist`, the root injectable so that tests read fixture trees under
//! `tests/fixtures/numa/`), choosing the shards' cores (the node's cores ∩
//! `runtime.cores` when set ∩ the CPUs this process may run on), and the
//! memory policy of the threads that [`crate::shard::Router::start`] spawns.
//! It does not pin anything itself: the cores it picks go to glommio's
//! `Placement::Fixed` like any other.
//!
//! Memory policy: `MPOL_PREFERRED` for the node, not `MPOL_BIND`. Locality
//! is a matter of speed here, never of correctness: under `MPOL_BIND` an
//! allocation that the node cannot satisfy (the node full of page cache or
//! of another process, while the other nodes have room) ends in the OOM
//! killer taking the router with every session in it; under
//! `MPOL_PREFERRED` the page comes from the node when it can and from
//! another node when it cannot, which costs a remote access, not the
//! process. (`numactl --preferred` makes the same trade.) The policy is
//! per thread and inherited at thread creation: `Router::start` sets it on
//! its own thread around the spawning of the shard executors
//! ([`NodeMemory`], which puts the caller's policy back on drop), so that
//! everything a shard allocates from its first instruction (its io_uring
//! rings and registered buffers, its mimalloc heap, its stack) already
//! prefers the node; each shard checks its policy with `get_mempolicy` and
//! logs its placement. Where the syscall is refused (a seccomp profile
//! without it, a kernel without NUMA) the router logs a warning and runs on
//! the node's cores with the default policy: placement still works, only
//! memory is left to first touch.
//!
//! A kernel built without NUMA has no `/sys/devices/system/node`: it is one
//! node, 0, holding every CPU this process may use.
//!
//! Bounds: at most [`NODES_MAX`] nodes and cores below [`CORES_MAX`] (the
//! kernel's own maxima), a `cpulist` file read up to [`CPULIST_BYTES_MAX`].
//! Hand-written rather than hwloc (a C library) or a topology crate: the
//! kernel's cpu-list format is ranges and commas, and we need nothing else
//! of the topology.

use std::io::Read;
use std::path::Path;

use thiserror::Error;

use crate::config::RuntimeConfig;

/// Where the kernel shows the nodes.
pub const SYSFS_NODES: &str = "/sys/devices/system/node";

/// The kernel's largest MAX_NUMNODES (NODES_SHIFT = 10).
pub const NODES_MAX: usize = 1024;

/// The kernel's largest NR_CPUS (x86_64 MAXSMP).
pub const CORES_MAX: usize = 8192;

/// Longest `cpulist` read: 8192 CPUs listed one by one ("8191,") fit.
const CPULIST_BYTES_MAX: u64 = 48 * 1024;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum NumaError {
    #[error("runtime.numa_node: node {node} does not exist on this machine (nodes: {known})")]
    NoSuchNode { node: usize, known: String },
    #[error(
        "runtime.numa_node: node {node} has no core the shards may use \
         (its cores: {node_cores}; {restricted_by})"
    )]
    NoUsableCore {
        node: usize,
        node_cores: String,
        restricted_by: String,
    },
    #[error("runtime.numa_node: cannot read the NUMA topology: {path}: {reason}")]
    Topology { path: String, reason: String },
}

/// The machine's nodes and their cores, by node id (ascending).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    nodes: Vec<(usize, Vec<usize>)>,
}

impl Topology {
    /// Reads `root/nodeN/cpulist` for every `nodeN` under `root`; `None`
    /// when `root` does not exist (a kernel without NUMA).
    pub fn read(root: &Path) -> Result<Option<Topology>, NumaError> {
        let failed = |path: &Path, reason: String| NumaError::Topology {
            path: path.display().to_string(),
            reason,
        };
        let entries = match std::fs::read_dir(root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(failed(root, e.to_string())),
        };
        let mut nodes = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| failed(root, e.to_string()))?;
            let name = entry.file_name();
            // Beside node0, node1 …: has_cpu, online, possible, power ….
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_prefix("node"))
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            let path = entry.path().join("cpulist");
            let node = id
                .parse::<usize>()
                .ok()
                .filter(|n| *n < NODES_MAX)
                .ok_or_else(|| failed(&entry.path(), format!("node {id} is out of range")))?;
            let text = read_capped(&path).map_err(|e| failed(&path, e))?;
            let cores = parse_cpulist(&text).map_err(|e| failed(&path, e))?;
            nodes.push((node, cores));
        }
        if nodes.is_empty() {
            return Err(failed(root, "no nodeN directory".into()));
        }
        nodes.sort_unstable_by_key(|(n, _)| *n);
        Ok(Some(Topology { nodes }))
    }

    /// One node, 0, holding `cores`: a machine without NUMA.
    pub fn single(cores: &[usize]) -> Topology {
        Topology {
            nodes: vec![(0, cores.to_vec())],
        }
    }

    pub fn nodes(&self) -> impl Iterator<Item = usize> + '_ {
        self.nodes.iter().map(|(n, _)| *n)
    }

    /// The node's cores, ascending; None for a node the machine lacks.
    pub fn cores(&self, node: usize) -> Option<&[usize]> {
        self.nodes
            .iter()
            .find(|(n, _)| *n == node)
            .map(|(_, c)| c.as_slice())
    }
}

fn read_capped(path: &Path) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut text = String::new();
    file.take(CPULIST_BYTES_MAX + 1)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > CPULIST_BYTES_MAX {
        return Err(format!("longer than {CPULIST_BYTES_MAX} bytes"));
    }
    Ok(text)
}

/// Parses the kernel's cpu-list format as sysfs prints it: "0-3,8-11\n",
/// "0\n", or an empty line for a node without CPUs (memory only). Cores
/// come out ascending and once each.
pub fn parse_cpulist(text: &str) -> Result<Vec<usize>, String> {
    let text = text.trim();
    let mut cores = Vec::new();
    if text.is_empty() {
        return Ok(cores);
    }
    let core = |t: &str| match t.parse::<usize>() {
        Ok(n) if n < CORES_MAX => Ok(n),
        Ok(n) => Err(format!("cpu {n} is out of range (below {CORES_MAX})")),
        Err(_) => Err(format!("'{t}' in '{text}' is not a cpu number")),
    };
    for part in text.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (core(a)?, core(b)?);
                if a > b {
                    return Err(format!("range '{part}' in '{text}' is reversed"));
                }
                cores.extend(a..=b);
            }
            None => cores.push(core(part)?),
        }
    }
    cores.sort_unstable();
    cores.dedup();
    Ok(cores)
}

/// Where the shards run when `runtime.numa_node` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub node: usize,
    /// Core of each shard, by shard index (round-robin over the usable
    /// cores when there are more shards than cores).
    pub shard_cores: Vec<usize>,
}

/// The node's usable cores (∩ `runtime.cores` when set ∩ `allowed`), and
/// the shards spread over them.
pub fn place(
    topology: &Topology,
    node: usize,
    runtime: &RuntimeConfig,
    allowed: &[usize],
) -> Result<Placement, NumaError> {
    let node_cores = topology.cores(node).ok_or_else(|| NumaError::NoSuchNode {
        node,
        known: list(&topology.nodes().collect::<Vec<_>>()),
    })?;
    let chosen = if runtime.cores.trim().is_empty() {
        None
    } else {
        // resolve() has checked the key already.
        Some(crate::config::parse_cpu_list(&runtime.cores).unwrap_or_default())
    };
    let usable: Vec<usize> = node_cores
        .iter()
        .copied()
        .filter(|c| allowed.contains(c))
        .filter(|c| chosen.as_ref().is_none_or(|chosen| chosen.contains(c)))
        .collect();
    if usable.is_empty() {
        let mut restricted_by = format!("this process may run on {}", list(allowed));
        if chosen.is_some() {
            restricted_by.push_str(&format!(", runtime.cores is '{}'", runtime.cores));
        }
        return Err(NumaError::NoUsableCore {
            node,
            node_cores: list(node_cores),
            restricted_by,
        });
    }
    let shards = match runtime.shards {
        0 => usable.len(),
        n => n,
    };
    Ok(Placement {
        node,
        shard_cores: (0..shards).map(|i| usable[i % usable.len()]).collect(),
    })
}

/// Reads the machine's topology and places the shards on `node`.
pub fn place_on_this_machine(node: usize, runtime: &RuntimeConfig) -> Result<Placement, NumaError> {
    let allowed = allowed_cores();
    let topology =
        Topology::read(Path::new(SYSFS_NODES))?.unwrap_or_else(|| Topology::single(&allowed));
    place(&topology, node, runtime, &allowed)
}

/// Moves `resolved`'s shards onto `runtime.numa_node`'s cores when it is
/// set (`weft run` and `weft check-config` call it after `resolve`).
pub fn apply(resolved: &mut crate::config::Resolved) -> Result<Option<Placement>, NumaError> {
    let Some(node) = resolved.config.runtime.numa_node else {
        return Ok(None);
    };
    let placement = place_on_this_machine(node, &resolved.config.runtime)?;
    resolved.shard_cores = placement.shard_cores.clone();
    Ok(Some(placement))
}

/// The CPUs this process may run on (sched_getaffinity).
pub fn allowed_cores() -> Vec<usize> {
    match nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)) {
        Ok(set) => (0..nix::sched::CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn list(items: &[usize]) -> String {
    if items.is_empty() {
        return "none".into();
    }
    items
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

// The memory policy syscalls (<linux/mempolicy.h>); libc has the syscall
// numbers but no wrappers.
const MPOL_DEFAULT: libc::c_int = 0;
const MPOL_PREFERRED: libc::c_int = 1;
const MASK_WORDS: usize = NODES_MAX / 64;
/// The kernel reads `maxnode - 1` bits (numactl passes bits + 1 too).
const MASK_MAXNODE: libc::c_ulong = NODES_MAX as libc::c_ulong + 1;

type NodeMask = [libc::c_ulong; MASK_WORDS];

fn set_mempolicy(mode: libc::c_int, mask: &NodeMask) -> std::io::Result<()> {
    // SAFETY: the mask holds MASK_MAXNODE - 1 bits; the kernel only reads it.
    let r = unsafe { libc::syscall(libc::SYS_set_mempolicy, mode, mask.as_ptr(), MASK_MAXNODE) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// This thread's memory policy: (mode, node mask).
fn get_mempolicy() -> std::io::Result<(libc::c_int, NodeMask)> {
    let mut mode: libc::c_int = 0;
    let mut mask: NodeMask = [0; MASK_WORDS];
    // SAFETY: mode and mask are writable and sized as the call says; flags
    // 0 and addr NULL ask for this thread's policy.
    let r = unsafe {
        libc::syscall(
            libc::SYS_get_mempolicy,
            &mut mode as *mut libc::c_int,
            mask.as_mut_ptr(),
            MASK_MAXNODE,
            std::ptr::null_mut::<libc::c_void>(),
            0 as libc::c_ulong,
        )
    };
    if r == 0 {
        Ok((mode, mask))
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn mask_of(node: usize) -> NodeMask {
    let mut mask: NodeMask = [0; MASK_WORDS];
    mask[node / 64] |= 1 << (node % 64);
    mask
}

fn nodes_in(mask: &NodeMask) -> Vec<usize> {
    (0..NODES_MAX)
        .filter(|n| mask[n / 64] & (1 << (n % 64)) != 0)
        .collect()
}

/// While alive, threads this thread spawns prefer `node`'s memory (the
/// policy is inherited at thread creation); drop restores this thread's
/// previous policy.
pub struct NodeMemory {
    previous: Option<(libc::c_int, NodeMask)>,
}

impl NodeMemory {
    /// Sets MPOL_PREFERRED for `node` on the calling thread.
    pub fn prefer(node: usize) -> std::io::Result<NodeMemory> {
        debug_assert!(node < NODES_MAX);
        let previous = get_mempolicy().ok();
        set_mempolicy(MPOL_PREFERRED, &mask_of(node))?;
        Ok(NodeMemory { previous })
    }
}

impl Drop for NodeMemory {
    fn drop(&mut self) {
        let (mode, mask) = self.previous.unwrap_or((MPOL_DEFAULT, [0; MASK_WORDS]));
        if let Err(e) = set_mempolicy(mode, &mask) {
            tracing::warn!(error = %e, "numa: cannot restore the start thread's memory policy");
        }
    }
}

/// The calling thread's memory policy, for a log line: "preferred node 0",
/// "default", ….
pub fn describe_policy() -> String {
    match get_mempolicy() {
        Ok((MPOL_DEFAULT, _)) => "default (first touch)".into(),
        Ok((MPOL_PREFERRED, mask)) => format!("preferred node {}", list(&nodes_in(&mask))),
        Ok((mode, mask)) => format!("mode {mode} nodes {}", list(&nodes_in(&mask))),
        Err(e) => format!("unknown ({e})"),
    }
}

/// Sets the spawning thread's policy for `node`, or logs why it cannot
/// (the shards still run on the node's cores).
pub fn prefer_node_memory(node: usize) -> Option<NodeMemory> {
    match NodeMemory::prefer(node) {
        Ok(guard) => Some(guard),
        Err(e) => {
            tracing::warn!(
                node,
                error = %e,
                "numa: set_mempolicy(MPOL_PREFERRED) refused; the shards run on the node's \
                 cores with the default memory policy"
            );
            None
        }
    }
}

/// A shard's line saying where it runs and where its memory comes from.
pub fn log_shard(shard: usize, core: usize, node: Option<usize>) {
    if let Some(node) = node {
        let memory = describe_policy();
        tracing::info!(
            shard,
            core,
            node,
            memory = %memory,
            "numa: shard {shard} on core {core} of node {node}, memory policy {memory}"
        );
    }
}

#[cfg(test)]
mod tests;
