// network.mode, shared by the stages that make SEDs (predict, and validate's realizations); a
// header of no stage, so that no stage includes another's.
#pragma once

#include "core/enum_names.h"

namespace csst {

// Where the predicted SEDs come from (network.mode).
enum class SedSource {
  kModel,        // the UaRA-net (network.model)
  kPaperErrors,  // the true SEDs perturbed by the paper's error table
};
inline constexpr EnumNames<SedSource, 2> kSedSourceNames = {
    {{SedSource::kModel, "model"}, {SedSource::kPaperErrors, "paper_errors"}}};
constexpr const auto& NamesOf(SedSource) { return kSedSourceNames; }

}  // namespace csst
