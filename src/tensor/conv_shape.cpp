#include "tensor/conv_shape.h"

#include <sstream>

namespace metafew::tensor {

std::string ConvShape::to_string() const {
  std::ostringstream os;
  os << "x(" << n << "," << ic << "," << ih << "," << iw << ") w(" << oc << "," << ic << "," << kh << ","
     << kw << ") stride(" << sh << "," << sw << ") pad(" << ph << "," << pw << ") -> ";
  if (valid()) {
    os << "y(" << n << "," << oc << "," << oh() << "," << ow() << ")";
  } else {
    os << "y(invalid)";
  }
  if (algorithm == ConvAlgorithm::winograd) os << " winograd";
  return os.str();
}

}  // namespace metafew::tensor
