#pragma once
// The data layer in one include: datasets (folders, Omniglot, builtin:glyphs), episode sampling and the
// sinusoid regression family. See ARCHITECTURE.md (data/) and the headers below for the contracts.
#include "data/dataset.h"   // IWYU pragma: export
#include "data/episode.h"   // IWYU pragma: export
#include "data/glyphs.h"    // IWYU pragma: export
#include "data/image.h"     // IWYU pragma: export
#include "data/sinusoid.h"  // IWYU pragma: export
