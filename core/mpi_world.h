// The MPI world of a run (`mpirun -np K csst-flatcube run CONFIG`), behind a small interface so
// that the rest of the code neither includes <mpi.h> nor depends on MPI being built (CSST_MPI=OFF:
// one rank, these calls are never needed). Only mpi_world.cpp includes <mpi.h>.
//
// Threading: MPI is initialised with MPI_THREAD_SERIALIZED; the engine runs stages on TBB threads,
// and only one thread at a time (the distributed stage's body) talks to other ranks.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/errors.h"

namespace csst {

class MpiWorld {
 public:
  // Initialises MPI when the process was started by mpirun/mpiexec with more than one rank (or when
  // built with MPI at all); safe to call once from main. Finalize at the end of main.
  static void Init(int* argc, char*** argv);
  static void Finalize();
  static int Rank();  // 0 without MPI
  static int Size();  // 1 without MPI
  static bool Distributed() { return Size() > 1; }
  // Point to point, blocking, in byte messages (tags < 2^15).
  static void Send(int dest, int tag, const std::vector<char>& bytes);
  static std::vector<char> Recv(int source, int tag);
  // Non-blocking send: the message is kept until WaitSends, so the sender goes on computing
  // meanwhile.
  static void SendAsync(int dest, int tag, std::vector<char> bytes);
  static void WaitSends();
  // Every rank's bytes on every rank, in rank order (MPI_Allgatherv; beyond 2 GB in all, rank 0
  // receives them with `tag` and sends the collection back out). Every rank must call it at the
  // same point; one process returns {mine}.
  static std::vector<std::vector<char>> AllGather(int tag, const std::vector<char>& mine);
  // Ends every rank of the job at once (mpirun's exit code becomes `code`).
  [[noreturn]] static void Abort(int code);
  // Bytes this process sent and received so far (the bench's communication figure).
  static uint64_t BytesSent();
  static uint64_t BytesReceived();
};

// A byte buffer for the messages: plain values and vectors of them, read back in the order written.
class ByteWriter {
 public:
  template <typename T>
  void Put(const T& v) {
    const char* p = reinterpret_cast<const char*>(&v);
    bytes_.insert(bytes_.end(), p, p + sizeof(T));
  }
  template <typename T>
  void PutVector(const std::vector<T>& v) {
    Put<uint64_t>(v.size());
    const char* p = reinterpret_cast<const char*>(v.data());
    bytes_.insert(bytes_.end(), p, p + sizeof(T) * v.size());
  }
  void PutString(const std::string& s) {
    Put<uint64_t>(s.size());
    bytes_.insert(bytes_.end(), s.begin(), s.end());
  }
  // n values from p (an Eigen vector's or matrix's data), with their count.
  template <typename T>
  void PutArray(const T* p, size_t n) {
    Put<uint64_t>(n);
    const char* b = reinterpret_cast<const char*>(p);
    bytes_.insert(bytes_.end(), b, b + sizeof(T) * n);
  }
  std::vector<char>& bytes() { return bytes_; }

 private:
  std::vector<char> bytes_;
};

class ByteReader {
 public:
  explicit ByteReader(const std::vector<char>& bytes) : bytes_(bytes) {}
  template <typename T>
  T Get() {
    T v;
    Take(&v, sizeof(T));
    return v;
  }
  template <typename T>
  std::vector<T> GetVector() {
    std::vector<T> v(Get<uint64_t>());
    Take(v.data(), sizeof(T) * v.size());
    return v;
  }
  std::string GetString() {
    std::string s(Get<uint64_t>(), '\0');
    Take(s.data(), s.size());
    return s;
  }
  // Exactly n values into out (PutArray's); a message of another count is an Error.
  template <typename T>
  void GetArray(T* out, size_t n) {
    if (Get<uint64_t>() != n)
      throw Error("MPI message with an array of another size (internal error)");
    Take(out, sizeof(T) * n);
  }
  bool done() const { return at_ == bytes_.size(); }

 private:
  void Take(void* out, size_t n);
  const std::vector<char>& bytes_;
  size_t at_ = 0;
};

// Blocks 0 .. n_blocks - 1 of a stage that streams over its stars, spread over the ranks: block b
// is made by rank b mod K (`make(b)` returns it); rank 0 takes every block in block order (`take(b,
// block)`), its own as made and the others' from their messages (`put(writer, block)` and
// `get(reader)` turn a block into bytes and back). A worker returns once its blocks are sent; one
// process makes and takes block by block. The products are the same for any rank count when a
// block's content depends on its stars alone.
template <typename Make, typename Take, typename Put, typename Get>
void ShareBlocks(size_t n_blocks, int tag, Make make, Take take, Put put, Get get) {
  const int ranks = MpiWorld::Size(), me = MpiWorld::Rank();
  for (size_t b = 0; b < n_blocks; ++b) {
    const int owner = static_cast<int>(b % static_cast<size_t>(ranks));
    if (owner == me) {
      auto block = make(b);
      if (me == 0) {
        take(b, std::move(block));
        continue;
      }
      ByteWriter w;
      put(w, block);
      MpiWorld::Send(0, tag, w.bytes());
    } else if (me == 0) {
      const auto bytes = MpiWorld::Recv(owner, tag);
      ByteReader r(bytes);
      auto block = get(r);
      if (!r.done())
        throw Error("rank " + std::to_string(owner) + " sent block " + std::to_string(b) +
                    " with more bytes than it holds (internal error)");
      take(b, std::move(block));
    }
  }
}

// Items 0 .. n_items - 1, each made by the one rank for which owns(i) holds: afterwards every rank
// holds every item. put(writer, i) writes an item made here, get(reader, i) reads one another rank
// made. Every rank calls it at once; with one process it does nothing.
template <typename Owns, typename Put, typename Get>
void ShareOwnedItems(size_t n_items, int tag, Owns owns, Put put, Get get) {
  if (MpiWorld::Size() == 1) return;
  ByteWriter w;
  for (size_t i = 0; i < n_items; ++i) {
    if (!owns(i)) continue;
    ByteWriter one;
    put(one, i);
    w.Put<uint64_t>(i);
    w.PutVector(one.bytes());
  }
  for (const auto& part : MpiWorld::AllGather(tag, w.bytes())) {
    ByteReader r(part);
    while (!r.done()) {
      const size_t i = r.Get<uint64_t>();
      const auto bytes = r.GetVector<char>();
      if (i >= n_items)
        throw Error("a rank sent item " + std::to_string(i) + " of " + std::to_string(n_items) +
                    " (internal error)");
      if (owns(i)) continue;  // made here
      ByteReader one(bytes);
      get(one, i);
      if (!one.done())
        throw Error("item " + std::to_string(i) +
                    " arrived with more bytes than it holds (internal error)");
    }
  }
}

}  // namespace csst
