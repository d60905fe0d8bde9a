#include "core/mpi_world.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>

#include "build_config.h"
#include "core/errors.h"

#if CSST_HAVE_MPI
#include <mpi.h>
#endif

namespace csst {
namespace {
int g_rank = 0, g_size = 1;
[[maybe_unused]] bool g_initialised = false;
std::atomic<uint64_t> g_sent{0}, g_received{0};
#if CSST_HAVE_MPI
struct Pending {  // a message in flight: its size word, its bytes and their requests
  uint64_t n = 0;
  std::vector<char> bytes;
  std::vector<MPI_Request> requests;
};
std::vector<std::unique_ptr<Pending>> g_pending;
#endif

#if CSST_HAVE_MPI
void Check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  throw Error("rank " + std::to_string(g_rank) + ": MPI " + what +
              " failed: " + std::string(text, len));
}
#endif
}  // namespace

void MpiWorld::Init(int* argc, char*** argv) {
#if CSST_HAVE_MPI
  // Only when a launcher started us (OpenMPI, MPICH, Slurm's PMI): a plain run never loads MPI's
  // runtime.
  const bool launched =
      std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE") || std::getenv("PMIX_RANK");
  if (!launched) return;
  int provided = 0;
  Check(MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided), "init");
  g_initialised = true;
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_size);
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  if (provided < MPI_THREAD_SERIALIZED) {
    throw Error("rank " + std::to_string(g_rank) +
                ": this MPI library does not provide MPI_THREAD_SERIALIZED");
  }
#else
  (void)argc;
  (void)argv;
#endif
}

void MpiWorld::Finalize() {
#if CSST_HAVE_MPI
  if (g_initialised) MPI_Finalize();
  g_initialised = false;
#endif
}

int MpiWorld::Rank() { return g_rank; }
int MpiWorld::Size() { return g_size; }

void MpiWorld::Send(int dest, int tag, const std::vector<char>& bytes) {
#if CSST_HAVE_MPI
  const uint64_t n = bytes.size();
  Check(MPI_Send(&n, 1, MPI_UINT64_T, dest, tag, MPI_COMM_WORLD), "send (size)");
  // Large messages in pieces of at most 1 GiB (MPI counts are int).
  const uint64_t piece = 1ull << 30;
  for (uint64_t at = 0; at < n; at += piece) {
    const int len = static_cast<int>(std::min<uint64_t>(piece, n - at));
    Check(MPI_Send(bytes.data() + at, len, MPI_BYTE, dest, tag, MPI_COMM_WORLD), "send");
  }
  g_sent += n + sizeof(n);
#else
  (void)dest, (void)tag, (void)bytes;
  throw Error("MPI send without MPI (internal error)");
#endif
}

void MpiWorld::SendAsync(int dest, int tag, std::vector<char> bytes) {
#if CSST_HAVE_MPI
  auto p = std::make_unique<Pending>();
  p->n = bytes.size();
  p->bytes = std::move(bytes);
  p->requests.emplace_back();
  Check(MPI_Isend(&p->n, 1, MPI_UINT64_T, dest, tag, MPI_COMM_WORLD, &p->requests.back()),
        "send (size)");
  const uint64_t piece = 1ull << 30;
  for (uint64_t at = 0; at < p->n; at += piece) {
    const int len = static_cast<int>(std::min<uint64_t>(piece, p->n - at));
    p->requests.emplace_back();
    Check(MPI_Isend(p->bytes.data() + at, len, MPI_BYTE, dest, tag, MPI_COMM_WORLD,
                    &p->requests.back()),
          "send");
  }
  g_sent += p->n + sizeof(p->n);
  g_pending.push_back(std::move(p));
#else
  (void)dest, (void)tag, (void)bytes;
  throw Error("MPI send without MPI (internal error)");
#endif
}

void MpiWorld::WaitSends() {
#if CSST_HAVE_MPI
  for (auto& p : g_pending) {
    Check(
        MPI_Waitall(static_cast<int>(p->requests.size()), p->requests.data(), MPI_STATUSES_IGNORE),
        "send (wait)");
  }
  g_pending.clear();
#endif
}

std::vector<char> MpiWorld::Recv(int source, int tag) {
#if CSST_HAVE_MPI
  uint64_t n = 0;
  Check(MPI_Recv(&n, 1, MPI_UINT64_T, source, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE),
        "receive (size)");
  std::vector<char> bytes(n);
  const uint64_t piece = 1ull << 30;
  for (uint64_t at = 0; at < n; at += piece) {
    const int len = static_cast<int>(std::min<uint64_t>(piece, n - at));
    Check(
        MPI_Recv(bytes.data() + at, len, MPI_BYTE, source, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE),
        "receive");
  }
  g_received += n + sizeof(n);
  return bytes;
#else
  (void)source, (void)tag;
  throw Error("MPI receive without MPI (internal error)");
#endif
}

std::vector<std::vector<char>> MpiWorld::AllGather(int tag, const std::vector<char>& mine) {
  const int ranks = Size(), me = Rank();
  std::vector<std::vector<char>> all(static_cast<size_t>(ranks));
  all[static_cast<size_t>(me)] = mine;
  if (ranks == 1) return all;
#if CSST_HAVE_MPI
  // MPI_Allgatherv (the library's own algorithm: no rank relays the others' bytes), while the
  // total fits MPI's int counts; beyond, rank 0 gathers and sends the collection back out.
  const uint64_t n = mine.size();
  std::vector<uint64_t> sizes(static_cast<size_t>(ranks));
  Check(MPI_Allgather(&n, 1, MPI_UINT64_T, sizes.data(), 1, MPI_UINT64_T, MPI_COMM_WORLD),
        "all-gather (sizes)");
  uint64_t total = 0;
  for (uint64_t v : sizes) total += v;
  if (total <= static_cast<uint64_t>(std::numeric_limits<int>::max())) {
    std::vector<int> counts(static_cast<size_t>(ranks)), offsets(static_cast<size_t>(ranks));
    int at = 0;
    for (int k = 0; k < ranks; ++k) {
      counts[static_cast<size_t>(k)] = static_cast<int>(sizes[static_cast<size_t>(k)]);
      offsets[static_cast<size_t>(k)] = at;
      at += counts[static_cast<size_t>(k)];
    }
    std::vector<char> bytes(total);
    Check(MPI_Allgatherv(mine.data(), static_cast<int>(n), MPI_BYTE, bytes.data(), counts.data(),
                         offsets.data(), MPI_BYTE, MPI_COMM_WORLD),
          "all-gather");
    for (int k = 0; k < ranks; ++k) {
      if (k == me) continue;
      const char* p = bytes.data() + offsets[static_cast<size_t>(k)];
      all[static_cast<size_t>(k)].assign(p, p + counts[static_cast<size_t>(k)]);
    }
    g_sent += n * static_cast<uint64_t>(ranks - 1);
    g_received += total - n;
    return all;
  }
#endif
  if (me != 0) {
    Send(0, tag, mine);
    const auto bytes = Recv(0, tag);
    ByteReader r(bytes);
    for (auto& part : all) part = r.GetVector<char>();
    return all;
  }
  for (int k = 1; k < ranks; ++k) all[static_cast<size_t>(k)] = Recv(k, tag);
  ByteWriter w;
  for (const auto& part : all) w.PutVector(part);
  for (int k = 1; k < ranks; ++k) Send(k, tag, w.bytes());
  return all;
}

void MpiWorld::Abort(int code) {
#if CSST_HAVE_MPI
  if (g_initialised) MPI_Abort(MPI_COMM_WORLD, code);
#endif
  std::_Exit(code);
}

uint64_t MpiWorld::BytesSent() { return g_sent; }
uint64_t MpiWorld::BytesReceived() { return g_received; }

void ByteReader::Take(void* out, size_t n) {
  if (at_ + n > bytes_.size()) throw Error("MPI message shorter than expected (internal error)");
  if (n) std::memcpy(out, bytes_.data() + at_, n);
  at_ += n;
}

}  // namespace csst
