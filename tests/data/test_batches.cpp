// Pretraining batches (Note [Pretraining batches] in data/batch.cpp): every image of the split once per
// epoch, labels by class, a pure function of the index.
#include <doctest/doctest.h>

#include <map>
#include <set>

#include "data/batch.h"
#include "data/data_support.h"
#include "data/glyphs.h"

namespace metafew::testing {

TEST_CASE("data: pretraining batches visit every image of the split once per epoch, labelled by class") {
  const auto ds = data::make_glyph_dataset(1);
  const data::Split& train = ds->split("train");
  const int64_t batch = 48;
  data::BatchSampler s(ds, "train", batch, 7);
  REQUIRE(s.classes() == static_cast<int64_t>(train.classes.size()));
  int64_t images = 0;
  for (const data::SplitClass& c : train.classes) images += ds->class_size(c);
  REQUIRE(s.images() == images);

  // The pixels of each (class, image) of the split, to recognise what a batch served.
  const int64_t px = ds->image_spec().pixels();
  std::map<std::vector<float>, std::pair<int32_t, int>> seen;  // pixels -> (label, times seen)
  std::vector<float> img(static_cast<size_t>(px));
  for (size_t c = 0; c < train.classes.size(); ++c) {
    const data::SplitClass& sc = train.classes[c];
    for (int64_t i = 0; i < ds->class_size(sc); ++i) {
      ds->read_image(ds->base_class(sc.base_class).first_image + i, sc.quarter_turns, img.data());
      seen[img] = {static_cast<int32_t>(c), 0};
    }
  }
  const bool distinct = static_cast<int64_t>(seen.size()) == images;
  // Batches covering exactly two epochs (the batch size divides neither epoch boundary in general).
  const int64_t positions = 2 * images;
  int64_t served = 0;
  for (uint64_t b = 0; served < positions; ++b) {
    const data::Batch got = s.batch(b);
    REQUIRE(got.x.shape() == tensor::Shape{batch, ds->image_spec().channels, ds->image_spec().height, ds->image_spec().width});
    const float* x = got.x.data<float>();
    const int32_t* y = got.y.data<int32_t>();
    for (int64_t k = 0; k < batch && served < positions; ++k, ++served) {
      std::vector<float> one(x + k * px, x + (k + 1) * px);
      auto it = seen.find(one);
      REQUIRE(it != seen.end());
      CHECK(it->second.first == y[k]);
      ++it->second.second;
      if (served + 1 == images && distinct)  // the end of the first epoch: everything exactly once
        for (const auto& [pixels, entry] : seen) CHECK(entry.second == 1);
    }
  }
  if (distinct)
    for (const auto& [pixels, entry] : seen) CHECK(entry.second == 2);
  // A pure function of the index; another seed another order.
  CHECK(batch_hash(s.batch(5)) == batch_hash(s.batch(5)));
  data::BatchSampler other(ds, "train", batch, 8);
  CHECK(batch_hash(s.batch(0)) != batch_hash(other.batch(0)));
  data::BatchSampler again(ds, "train", batch, 7);
  CHECK(batch_hash(s.batch(9)) == batch_hash(again.batch(9)));

  CHECK_THROWS_WITH_AS(data::BatchSampler(ds, "train", 0, 1), doctest::Contains("--batch-size must be at least 1"),
                       Error);
}

}  // namespace metafew::testing
