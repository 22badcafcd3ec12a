// The CIFAR-10 models by name, for tools/cifar and tools/lr_heatmap (which rebuilds a checkpoint's model).
#pragma once

#include <memory>
#include <string>

#include "tapegrad/models/densenet.hpp"
#include "tapegrad/models/resnet.hpp"

namespace tapegrad::tools {

// "resnet20", "resnet34" or "densenet121", 10 classes, in_channels 3 (CIFAR-10) or 1 (the Fashion-MNIST
// stand-in). Throws naming `flag` for any other name.
inline std::shared_ptr<nn::Layer> make_cifar_model(const std::string& name, int64_t in_channels, Generator& gen,
                                                   const std::string& flag = "--model") {
  if (name == "resnet20") return models::resnet20(10, gen, in_channels);
  if (name == "resnet34") return models::resnet34(10, gen, in_channels);
  if (name == "densenet121") return models::densenet121(10, gen, in_channels);
  TG_FAIL(flag, " '", name, "': expected resnet20, resnet34 or densenet121");
}

}  // namespace tapegrad::tools
