// CPU fused attention vs a textbook float64 implementation (ctest): forward,
// lse and gradients for several shapes, prefix masks, masks with holes, a fully
// masked batch row, dropout, strided layouts, and thread-count independence.
// The reference takes the softmax gradient as P o (dP - sum_l P dP), not the
// kernels' rowsum(dO o O) shortcut, so the two are independent derivations.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "attention/attention_cpu.h"
#include "attention/philox.h"

#include "tests/expect.h"

namespace {

using namespace pybert::attention;

using pybert_test::Expect;

struct Case {
  int B, H, Sq, Sk, D;
  float rate;
  bool holes;  // batch 1 gets a mask with holes (when B > 1)
  bool fully_masked_last;
};

double rel(const std::vector<double>& ref, const std::vector<double>& got) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(got[i])) return std::numeric_limits<double>::infinity();
    num += (got[i] - ref[i]) * (got[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return std::sqrt(num) / (den > 0 ? std::sqrt(den) : 1.0);
}

// Layout [B, S, H, D] with a padded head stride of D + pad (strided views).
struct Layout {
  int S, H, D, pad;
  int64_t head() const { return D + pad; }
  int64_t seq() const { return head() * H; }
  int64_t batch() const { return seq() * S; }
  size_t size(int B) const { return static_cast<size_t>(batch()) * B; }
  int64_t at(int b, int s, int h, int d) const { return b * batch() + s * seq() + h * head() + d; }
  Strides strides() const { return Strides{batch(), seq(), head()}; }
};

template <typename T>
void run_case(const Case& c, int num_threads, double tol, std::vector<T>* out_copy = nullptr) {
  std::mt19937 rng(c.B * 1000 + c.Sq * 7 + c.Sk + c.D);
  std::normal_distribution<double> nd(0.0, 1.0);
  const int pad = 3;
  const Layout lq{c.Sq, c.H, c.D, pad}, lk{c.Sk, c.H, c.D, pad};
  std::vector<T> q(lq.size(c.B)), k(lk.size(c.B)), v(lk.size(c.B)), dout(lq.size(c.B));
  for (auto* t : {&q, &k, &v, &dout})
    for (auto& x : *t) x = static_cast<T>(nd(rng));
  std::vector<int32_t> mask(static_cast<size_t>(c.B) * c.Sk, 0);
  for (int b = 0; b < c.B; ++b) {
    const int len = 1 + static_cast<int>(rng() % c.Sk);
    for (int j = 0; j < c.Sk; ++j) mask[b * c.Sk + j] = j < len;
    if (c.holes && b == 1)
      for (int j = 0; j < c.Sk; ++j) mask[b * c.Sk + j] = (rng() % 10) < 7 || j == 0;
    if (c.fully_masked_last && b == c.B - 1)
      for (int j = 0; j < c.Sk; ++j) mask[b * c.Sk + j] = 0;
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.D));
  const uint64_t seed = 99, offset = 3;
  std::vector<T> out(lq.size(c.B), T(-7)), dq(lq.size(c.B), T(-7)), dk(lk.size(c.B), T(-7)),
      dv(lk.size(c.B), T(-7));
  std::vector<float> lse(static_cast<size_t>(c.B) * c.H * c.Sq, -7.f);

  BackwardParams p;
  p.dtype = sizeof(T) == 4 ? DType::kFloat32 : DType::kFloat64;
  p.batch = c.B;
  p.heads = c.H;
  p.seq_q = c.Sq;
  p.seq_k = c.Sk;
  p.head_dim = c.D;
  p.q = q.data();
  p.k = k.data();
  p.v = v.data();
  p.out = out.data();
  p.q_strides = p.out_strides = p.dout_strides = p.dq_strides = lq.strides();
  p.k_strides = p.v_strides = p.dk_strides = p.dv_strides = lk.strides();
  p.mask = mask.data();
  p.mask_batch_stride = c.Sk;
  p.lse = lse.data();
  p.scale = scale;
  p.dropout_rate = c.rate;
  p.seed = seed;
  p.offset = offset;
  p.dout = dout.data();
  p.dq = dq.data();
  p.dk = dk.data();
  p.dv = dv.data();
  std::string err = forward_cpu(p, num_threads);
  Expect(err.empty(), "forward: " + err);
  err = backward_cpu(p, num_threads);
  Expect(err.empty(), "backward: " + err);

  // Reference.
  const uint32_t thr = dropout_threshold(c.rate);
  const double rs = c.rate > 0 ? 1.0 / (1.0 - c.rate) : 1.0;
  std::vector<double> r_out, g_out, r_dq, g_dq, r_dk, g_dk, r_dv, g_dv;
  std::vector<double> rdk(lk.size(c.B), 0.0), rdv(lk.size(c.B), 0.0);
  bool lse_ok = true;
  for (int b = 0; b < c.B; ++b)
    for (int h = 0; h < c.H; ++h) {
      const uint32_t bh = b * c.H + h;
      for (int i = 0; i < c.Sq; ++i) {
        std::vector<double> s(c.Sk), P(c.Sk, 0.0), Z(c.Sk, 1.0), dP(c.Sk, 0.0);
        double mx = -std::numeric_limits<double>::infinity();
        for (int j = 0; j < c.Sk; ++j) {
          double acc = 0;
          for (int d = 0; d < c.D; ++d) acc += double(q[lq.at(b, i, h, d)]) * double(k[lk.at(b, j, h, d)]);
          s[j] = acc * scale;
          if (mask[b * c.Sk + j]) mx = std::max(mx, s[j]);
          if (c.rate > 0) Z[j] = dropout_keep(seed, offset, thr, bh, i, j) ? 1.0 : 0.0;
        }
        double sum = 0;
        for (int j = 0; j < c.Sk; ++j)
          if (mask[b * c.Sk + j]) sum += (P[j] = std::exp(s[j] - mx));
        for (int j = 0; j < c.Sk; ++j) P[j] = sum > 0 ? P[j] / sum : 0.0;
        const double want_lse = sum > 0 ? mx + std::log(sum) : std::numeric_limits<double>::infinity();
        const double got_lse = lse[bh * c.Sq + i];
        lse_ok &= std::isinf(want_lse) ? std::isinf(got_lse) && got_lse > 0
                                       : std::fabs(got_lse - want_lse) < 1e-4 * (1 + std::fabs(want_lse));
        double pdp = 0;
        for (int j = 0; j < c.Sk; ++j) {
          double dpd = 0;
          for (int d = 0; d < c.D; ++d) dpd += double(dout[lq.at(b, i, h, d)]) * double(v[lk.at(b, j, h, d)]);
          dP[j] = dpd * Z[j] * rs;
          pdp += P[j] * dP[j];
        }
        for (int d = 0; d < c.D; ++d) {
          double o = 0, gq = 0;
          for (int j = 0; j < c.Sk; ++j) {
            o += P[j] * Z[j] * rs * double(v[lk.at(b, j, h, d)]);
            gq += P[j] * (dP[j] - pdp) * scale * double(k[lk.at(b, j, h, d)]);
          }
          r_out.push_back(o);
          g_out.push_back(double(out[lq.at(b, i, h, d)]));
          r_dq.push_back(gq);
          g_dq.push_back(double(dq[lq.at(b, i, h, d)]));
        }
        for (int j = 0; j < c.Sk; ++j) {
          const double ds = P[j] * (dP[j] - pdp) * scale;
          for (int d = 0; d < c.D; ++d) {
            rdk[lk.at(b, j, h, d)] += ds * double(q[lq.at(b, i, h, d)]);
            rdv[lk.at(b, j, h, d)] += P[j] * Z[j] * rs * double(dout[lq.at(b, i, h, d)]);
          }
        }
      }
      for (int j = 0; j < c.Sk; ++j)
        for (int d = 0; d < c.D; ++d) {
          r_dk.push_back(rdk[lk.at(b, j, h, d)]);
          g_dk.push_back(double(dk[lk.at(b, j, h, d)]));
          r_dv.push_back(rdv[lk.at(b, j, h, d)]);
          g_dv.push_back(double(dv[lk.at(b, j, h, d)]));
        }
    }
  const std::string name = std::string(sizeof(T) == 4 ? "f32" : "f64") + " B" + std::to_string(c.B) +
                           " H" + std::to_string(c.H) + " Sq" + std::to_string(c.Sq) + " Sk" +
                           std::to_string(c.Sk) + " D" + std::to_string(c.D) + " rate " +
                           std::to_string(c.rate) + " threads " + std::to_string(num_threads);
  const double eo = rel(r_out, g_out), eq = rel(r_dq, g_dq), ek = rel(r_dk, g_dk), ev = rel(r_dv, g_dv);
  Expect(eo <= tol && eq <= tol && ek <= tol && ev <= tol,
         name + ": rel errors out " + std::to_string(eo) + " dq " + std::to_string(eq) + " dk " +
             std::to_string(ek) + " dv " + std::to_string(ev));
  Expect(lse_ok, name + ": lse");
  if (out_copy) {
    out_copy->clear();
    for (auto* t : {&out, &dq, &dk, &dv}) out_copy->insert(out_copy->end(), t->begin(), t->end());
  }
}

}  // namespace

int main() {
  const Case cases[] = {
      {2, 3, 7, 7, 32, 0.f, false, false},    {3, 2, 129, 129, 64, 0.f, true, true},
      {1, 2, 65, 200, 16, 0.f, false, false}, {2, 1, 1, 1, 8, 0.f, false, false},
      {3, 2, 70, 70, 64, 0.2f, true, false},  {2, 2, 33, 150, 128, 0.1f, false, true},
      {2, 2, 40, 48, 32, 0.3f, true, false},  // rows of 33-64 keys: the AVX-512 mask's G = 2
  };
  for (const Case& c : cases) {
    run_case<float>(c, 1, 1e-5);
    run_case<double>(c, 2, 1e-12);
  }
  // The thread count does not change a single bit.
  std::vector<float> one, three;
  run_case<float>(cases[1], 1, 1e-5, &one);
  run_case<float>(cases[1], 3, 1e-5, &three);
  Expect(one.size() == three.size() &&
             std::memcmp(one.data(), three.data(), one.size() * sizeof(float)) == 0,
         "1 vs 3 threads: identical results");
  // Bad input.
  ForwardParams bad;
  bad.batch = 1;
  bad.heads = 1;
  bad.seq_q = bad.seq_k = 4;
  bad.head_dim = 8;
  bad.dropout_rate = 1.0f;
  Expect(forward_cpu(bad, 1).find("dropout_rate") == 0, "dropout_rate 1 rejected");
  bad.dropout_rate = 0.f;
  Expect(forward_cpu(bad, 1).find("q/out: null pointer") == 0, "null q rejected");
  bad.dtype = DType::kFloat16;
  Expect(forward_cpu(bad, 1).find("dtype") == 0, "float16 rejected on CPU");
  return pybert_test::Finish("attention_cpu_test");
}
