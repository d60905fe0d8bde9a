#include "pipeline/engine.h"

#include <tbb/flow_graph.h>
#include <tbb/global_control.h>
#include <tbb/info.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <set>

#include "core/errors.h"
#include "core/files.h"
#include "core/log.h"
#include "core/mpi_world.h"
#include "core/progress.h"
#include "core/usage.h"
#include "io/fits.h"
#include "network/sed_network.h"
#include "pipeline/memory_estimate.h"
#include "pipeline/store.h"

namespace csst {
namespace fs = std::filesystem;
namespace {

int IndexOf(const std::vector<StageDef>& stages, const std::string& name, const char* flag) {
  for (size_t i = 0; i < stages.size(); ++i)
    if (stages[i].name == name) return static_cast<int>(i);
  std::string names;
  for (const auto& s : stages) names += (names.empty() ? "" : ", ") + s.name;
  throw ConfigError(std::string("usage error: ") + flag + " " + name +
                    ": no such stage (stages: " + names + ")");
}

// producers[i] = indices of the stages whose outputs stage i reads.
std::vector<std::vector<int>> Producers(const std::vector<StageDef>& stages) {
  std::vector<std::vector<int>> p(stages.size());
  for (size_t i = 0; i < stages.size(); ++i) {
    for (const auto& in : stages[i].inputs) {
      bool found = false;
      for (size_t j = 0; j < i; ++j) {
        for (const auto& out : stages[j].outputs) {
          if (out == in) {
            p[i].push_back(static_cast<int>(j));
            found = true;
          }
        }
      }
      if (!found)
        throw Error("stage " + stages[i].name + " reads " + in + ", which no earlier stage writes");
    }
  }
  return p;
}

// True when stage `a` is stage `b` or downstream of it.
bool Downstream(const std::vector<std::vector<int>>& prod, int a, int b) {
  if (a == b) return true;
  for (int p : prod[a])
    if (Downstream(prod, p, b)) return true;
  return false;
}

using Body = std::function<void(int)>;

// One function builds the graph (oneTBB fgbzip2 style): a continue_node per stage, an edge from
// every producer to its consumers, a broadcast start node feeding the roots.
void BuildAndRun(const std::vector<std::vector<int>>& prod, const Body& body) {
  tbb::flow::graph g;
  using Node = tbb::flow::continue_node<tbb::flow::continue_msg>;
  tbb::flow::broadcast_node<tbb::flow::continue_msg> start(g);
  std::vector<std::unique_ptr<Node>> nodes;
  for (size_t i = 0; i < prod.size(); ++i) {
    const int idx = static_cast<int>(i);
    nodes.push_back(
        std::make_unique<Node>(g, [&body, idx](const tbb::flow::continue_msg&) { body(idx); }));
  }
  for (size_t i = 0; i < prod.size(); ++i) {
    if (prod[i].empty()) tbb::flow::make_edge(start, *nodes[i]);
    std::set<int> uniq(prod[i].begin(), prod[i].end());
    for (int p : uniq) tbb::flow::make_edge(*nodes[p], *nodes[i]);
  }
  start.try_put(tbb::flow::continue_msg());
  g.wait_for_all();
}

}  // namespace

namespace {
// Worker threads of a run: --threads, else the config's threads, else every core.
int ThreadsOf(const Config& config, const RunOptions& o) {
  const int threads = o.threads > 0 ? o.threads : config.threads;
  return threads > 0 ? threads : tbb::info::default_concurrency();
}
}  // namespace

std::vector<StageOutcome> RunPipeline(const Config& config, const std::vector<StageDef>& stages,
                                      const RunOptions& o) {
  auto log = Logger("pipeline");
  const auto prod = Producers(stages);
  const int n = static_cast<int>(stages.size());
  const int from = o.from.empty() ? -1 : IndexOf(stages, o.from, "--from");
  const int to = o.to.empty() ? -1 : IndexOf(stages, o.to, "--to");
  const int only = o.only.empty() ? -1 : IndexOf(stages, o.only, "--only");
  if (only >= 0 && (from >= 0 || to >= 0)) {
    throw ConfigError("usage error: --only cannot be combined with --from or --to");
  }
  if (from >= 0 && to >= 0 && from > to) {
    throw ConfigError("usage error: --from " + o.from + " comes after --to " + o.to +
                      " in the stage order: nothing to run");
  }

  ProductStore store(config.output.dir);
  tbb::global_control limit(tbb::global_control::max_allowed_parallelism, ThreadsOf(config, o));
  SetNetworkThreads(ThreadsOf(config, o));  // LibTorch's, once for the run

  if (only >= 0) {
    for (int p : prod[only]) {
      const std::string why = store.StaleReason(config, stages[p]);
      if (!why.empty()) {
        throw ConfigError("usage error: --only " + stages[only].name + " needs stage " +
                          stages[p].name + " to be up to date first (" + why +
                          "); run without --only, or with --to " + stages[p].name);
      }
    }
  }

  std::vector<StageOutcome> outcomes(n);
  // Set when any stage throws. TBB then cancels the graph, and parallel loops inside stages that
  // are still running end early without an exception: such a stage must not commit.
  std::atomic<bool> failed{false};
  std::string failed_stage;
  std::mutex failed_mu, distributed_mu;
  auto body = [&](int i) {
    const StageDef& s = stages[i];
    StageOutcome& out = outcomes[i];
    out.stage = s.name;
    if (only >= 0 && i != only) {
      out.reason = "not selected (--only)";
      return;
    }
    if (to >= 0 && !Downstream(prod, to, i)) {
      out.reason = "not selected (--to " + stages[to].name + ")";
      return;
    }
    std::string reason;
    if (o.force)
      reason = "forced (--force)";
    else if (only == i)
      reason = "selected (--only)";
    else if (from >= 0 && Downstream(prod, i, from))
      reason = "forced (--from " + stages[from].name + ")";
    else
      reason = store.StaleReason(config, s);
    if (reason.empty()) {
      out.reason = "up to date";
      log->info("stage {}: up to date, skipped", s.name);
      return;
    }
    CheckCancelled();
    if (StageMemory(config, s.name, 1) >
        0) {  // refused with the figures before it starts, not killed
      const auto stars = store.PathOf("stars.fits");
      if (std::filesystem::exists(stars)) {
        FitsReader r(stars.string());
        r.MoveTo("STARS");
        CheckStageMemory(config, s.name, r.NumRows());
      }
    }
    log->info("stage {}: start ({})", s.name, reason);
    StageIo io;
    io.config_hash = store.ConfigHash(config, s);
    for (const auto& in : s.inputs) io.in[in] = store.PathOf(in);
    std::vector<std::unique_ptr<AtomicOutput>> temps;
    for (const auto& p : s.outputs) {
      temps.push_back(std::make_unique<AtomicOutput>(store.PathOf(p)));
      io.out[p] = temps.back()->temp();
    }
    store.Forget(s.name);
    const std::string started = FitsDateNow();
    StageReport report;
    try {
      const bool spread = s.distributed && MpiWorld::Distributed();
      // One distributed stage at a time talks to the other ranks (MPI_THREAD_SERIALIZED; the
      // workers run the stages in the order rank 0 sends them): stages beside it that stay on rank
      // 0 go on.
      std::unique_lock<std::mutex> ranks_lock(distributed_mu, std::defer_lock);
      if (spread) ranks_lock.lock();
      const uint64_t received = MpiWorld::BytesReceived();
      if (spread) {  // the worker ranks join this stage (RunWorkerRank): its name and where its
                     // outputs go
        ByteWriter job;
        job.PutString(s.name);
        for (const auto& p : s.outputs) job.PutString(io.out.at(p).string());
        for (int k = 1; k < MpiWorld::Size(); ++k) MpiWorld::Send(k, kMpiJobTag, job.bytes());
      }
      const ProcessUsage before = ProcessUsage::Now();
      report = s.run(config, io);
      const ProcessUsage after = ProcessUsage::Now();
      report.cpu_seconds = after.cpu_seconds - before.cpu_seconds;
      report.peak_rss_mb = after.peak_rss_mb;
      if (spread) {
        log->info("stage {}: {} ranks, {} bytes received from the others", s.name, MpiWorld::Size(),
                  MpiWorld::BytesReceived() - received);
      }
    } catch (...) {
      {
        std::lock_guard<std::mutex> lock(failed_mu);
        if (failed_stage.empty()) failed_stage = s.name;
      }
      failed = true;
      throw;  // TBB cancels the graph and rethrows at wait_for_all()
    }
    CheckCancelled();  // an interrupt during the stage discards its outputs (temps are removed)
    if (failed) {
      std::lock_guard<std::mutex> lock(failed_mu);
      throw Error("stage " + s.name + " not recorded: stage " + failed_stage +
                  " failed while it ran");
    }
    store.Commit(config, s, io, started, report);
    out.ran = true;
    out.reason = reason;
    out.seconds = report.wall_seconds;
    out.report = report.brief;
    if (!report.brief.empty()) log->info("stage {}: {}", s.name, report.brief);
    log->info("stage {}: done in {:.2f} s", s.name, report.wall_seconds);
  };
  BuildAndRun(prod, body);
  return outcomes;
}

void RunWorkerRank(const Config& config, const std::vector<StageDef>& stages, const RunOptions& o) {
  tbb::global_control limit(tbb::global_control::max_allowed_parallelism, ThreadsOf(config, o));
  SetNetworkThreads(ThreadsOf(config, o));
  for (;;) {
    const auto job = MpiWorld::Recv(0, kMpiJobTag);
    if (job.empty()) return;  // rank 0 finished the run
    ByteReader message(job);
    const std::string name = message.GetString();
    const StageDef* s = nullptr;
    for (const auto& d : stages)
      if (d.name == name) s = &d;
    if (!s || !s->distributed)
      throw Error("rank 0 asked for stage '" + name + "', which is not distributed");
    const ProductStore store(config.output.dir, ProductStore::Access::kReadOnly);
    StageIo io;
    io.config_hash = store.ConfigHash(config, *s);
    for (const auto& in : s->inputs) io.in[in] = store.PathOf(in);
    // Rank 0's temporary outputs: a worker writes only its share of per-star files there (sample's
    // LAMOST files); tables and products are rank 0's, committed by rank 0 once every share has
    // arrived.
    for (const auto& p : s->outputs) io.out[p] = message.GetString();
    try {
      s->run(config, io);
    } catch (const std::exception& e) {
      throw Error("stage " + name + ": " + e.what());
    }
  }
}

void EndWorkerRanks() {
  for (int k = 1; k < MpiWorld::Size(); ++k) MpiWorld::Send(k, kMpiJobTag, {});
}

std::vector<StageStatusRow> PipelineStatus(const Config& config,
                                           const std::vector<StageDef>& stages) {
  ProductStore store(config.output.dir, ProductStore::Access::kReadOnly);
  std::vector<StageStatusRow> rows;
  for (const auto& s : stages) {
    StageStatusRow r;
    r.stage = s.name;
    const auto st = store.State(config, s);
    r.state = st;
    r.reason = store.StaleReason(config, s);
    for (const auto& p : s.outputs)
      r.products += (r.products.empty() ? "" : ", ") + store.PathOf(p).string();
    if (auto rec = store.Record(s.name)) {
      r.started = rec->started;
      r.duration_s = rec->duration_s;
      r.report = rec->report;
    }
    rows.push_back(r);
  }
  return rows;
}

}  // namespace csst
