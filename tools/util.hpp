// Small helpers of the tools: strings, numbers for people, loud banners.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace tapegrad::tools {

using json = nlohmann::ordered_json;  // keys in the order written

std::string lower(std::string s);
std::string trim(const std::string& s);
std::string join(const std::vector<std::string>& v, const std::string& sep);
std::string fmt(const char* f, double v);  // snprintf of one number
std::string hms(double seconds);           // "1:02:03", "2:03"
// A loud banner on stderr (a data substitution, for instance).
void banner(const std::string& note);

}  // namespace tapegrad::tools
