// The status page served at / with --http-port: one self-contained HTML document (inline CSS,
// JavaScript and canvas charts; no external resource) that polls /status.json every second.
#pragma once

#include <string_view>

namespace pubsubx::http {

std::string_view status_page_html();

}  // namespace pubsubx::http
