// A C++ program that leaks through a method of a class in a namespace,
// with the standard library's containers and a static destructor at exit.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace shop {
struct Order {
  std::string note;
  std::vector<char> blob;
};
class Ledger {
 public:
  __attribute__((noinline)) void record(size_t n) {
    orders_.push_back(std::make_unique<Order>(Order{"x", std::vector<char>(n, 1)}));
  }

 private:
  std::vector<std::unique_ptr<Order>> orders_;
};
}  // namespace shop

// Destroyed at exit, after main, with the allocator still in use.
static std::string farewell(4096, 'z');

int main(int argc, char **argv) {
  // Never deleted: the leak outlives main.
  auto *ledger = new shop::Ledger();
  auto end = std::chrono::steady_clock::now() + std::chrono::seconds(argc > 1 ? std::atoi(argv[1]) : 30);
  while (std::chrono::steady_clock::now() < end) {
    ledger->record(64 << 10);
    std::string s(100, 'c');
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::printf("done %zu\n", farewell.size());
}
