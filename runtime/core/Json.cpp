#include "runtime/core/Json.h"

namespace mtlc::core {

namespace {

bool isDigit(char c) { return c >= '0' && c <= '9'; }

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

void appendUtf8(Text &out, uint32_t cp) {
  char b[4];
  size_t n;
  if (cp < 0x80) {
    b[0] = char(cp), n = 1;
  } else if (cp < 0x800) {
    b[0] = char(0xC0 | (cp >> 6)), b[1] = char(0x80 | (cp & 0x3F)), n = 2;
  } else if (cp < 0x10000) {
    b[0] = char(0xE0 | (cp >> 12)), b[1] = char(0x80 | ((cp >> 6) & 0x3F)), b[2] = char(0x80 | (cp & 0x3F)), n = 3;
  } else {
    b[0] = char(0xF0 | (cp >> 18)), b[1] = char(0x80 | ((cp >> 12) & 0x3F));
    b[2] = char(0x80 | ((cp >> 6) & 0x3F)), b[3] = char(0x80 | (cp & 0x3F)), n = 4;
  }
  out.append(b, n);
}

}  // namespace

void JsonReader::ws() {
  while (s < e && (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r')) ++s;
}

bool JsonReader::peek(char c) {
  ws();
  return s < e && *s == c;
}

bool JsonReader::lit(char c) {
  if (!peek(c)) return fail();
  ++s;
  return true;
}

bool JsonReader::atEnd() {
  ws();
  return s == e;
}

// Four hex digits after `\u` (s points at them); a high surrogate must be followed by `\u` and a
// low one.
bool JsonReader::unicodeEscape(Text &out) {
  auto hex4 = [this](uint32_t &v) {
    if (e - s < 4) return false;
    v = 0;
    for (int i = 0; i < 4; ++i) {
      const int h = hexValue(s[i]);
      if (h < 0) return false;
      v = v * 16 + uint32_t(h);
    }
    s += 4;
    return true;
  };
  uint32_t cp;
  if (!hex4(cp)) return fail();
  if (cp >= 0xDC00 && cp <= 0xDFFF) return fail();
  if (cp >= 0xD800 && cp <= 0xDBFF) {
    uint32_t low;
    if (e - s < 2 || s[0] != '\\' || s[1] != 'u') return fail();
    s += 2;
    if (!hex4(low) || low < 0xDC00 || low > 0xDFFF) return fail();
    cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
  }
  appendUtf8(out, cp);
  return true;
}

bool JsonReader::string(Text &out) {
  if (!lit('"')) return false;
  while (s < e && *s != '"') {
    const unsigned char c = static_cast<unsigned char>(*s);
    if (c < 0x20) return fail();  // control characters must be escaped
    if (c != '\\') {
      out.append(s++, 1);
      continue;
    }
    if (++s >= e) return fail();
    const char k = *s++;
    char decoded;
    switch (k) {
      case '"': decoded = '"'; break;
      case '\\': decoded = '\\'; break;
      case '/': decoded = '/'; break;
      case 'b': decoded = '\b'; break;
      case 'f': decoded = '\f'; break;
      case 'n': decoded = '\n'; break;
      case 'r': decoded = '\r'; break;
      case 't': decoded = '\t'; break;
      case 'u':
        if (!unicodeEscape(out)) return false;
        continue;
      default:
        --s;
        return fail();
    }
    out.append(&decoded, 1);
  }
  if (s >= e) return fail();
  ++s;
  return !out.oom;
}

bool JsonReader::unsignedInteger(uint64_t &v) {
  ws();
  const char *p = s;
  if (p >= e || !isDigit(*p)) return false;
  if (*p == '0' && p + 1 < e && isDigit(p[1])) return false;  // a leading zero is not JSON
  uint64_t x = 0;
  for (; p < e && isDigit(*p); ++p) {
    const uint64_t d = uint64_t(*p - '0');
    if (x > (UINT64_MAX - d) / 10) return false;
    x = x * 10 + d;
  }
  if (p < e && (*p == '.' || *p == 'e' || *p == 'E')) return false;
  v = x;
  s = p;
  return true;
}

// -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
bool JsonReader::number() {
  if (s < e && *s == '-') ++s;
  if (s >= e || !isDigit(*s)) return fail();
  if (*s == '0') ++s;
  else while (s < e && isDigit(*s)) ++s;
  if (s < e && *s == '.') {
    ++s;
    if (s >= e || !isDigit(*s)) return fail();
    while (s < e && isDigit(*s)) ++s;
  }
  if (s < e && (*s == 'e' || *s == 'E')) {
    ++s;
    if (s < e && (*s == '+' || *s == '-')) ++s;
    if (s >= e || !isDigit(*s)) return fail();
    while (s < e && isDigit(*s)) ++s;
  }
  return true;
}

bool JsonReader::word(const char *w) {
  const size_t n = std::strlen(w);
  if (size_t(e - s) < n || std::strncmp(s, w, n) != 0) return fail();
  s += n;
  return true;
}

bool JsonReader::skip(int depth) {
  if (depth > 64) return fail();
  ws();
  if (s >= e) return fail();
  switch (*s) {
    case '"': {
      Text ignored;
      return string(ignored);
    }
    case '{':
    case '[': {
      const bool object = *s == '{';
      const char close = object ? '}' : ']';
      ++s;
      if (peek(close)) return ++s, true;
      do {
        if (object) {
          Text key;
          if (!string(key) || !lit(':')) return false;
        }
        if (!skip(depth + 1)) return false;
      } while (peek(',') && ++s);
      return lit(close);
    }
    case 't': return word("true");
    case 'f': return word("false");
    case 'n': return word("null");
    default: return number();
  }
}

bool JsonReader::compact(Text &out) {
  ws();
  const char *from = s;
  if (!skip()) return false;
  bool inString = false;
  for (const char *p = from; p < s; ++p) {
    if (inString) {
      out.append(p, 1);
      if (*p == '\\' && p + 1 < s) out.append(++p, 1);
      else if (*p == '"') inString = false;
    } else if (*p != ' ' && *p != '\n' && *p != '\t' && *p != '\r') {
      out.append(p, 1);
      inString = *p == '"';
    }
  }
  return !out.oom;
}

void appendJsonString(Text &out, const char *s) {
  out.add("\"");
  for (; *s; ++s) {
    const unsigned char c = static_cast<unsigned char>(*s);
    switch (c) {
      case '"': out.add("\\\""); break;
      case '\\': out.add("\\\\"); break;
      case '\b': out.add("\\b"); break;
      case '\f': out.add("\\f"); break;
      case '\n': out.add("\\n"); break;
      case '\r': out.add("\\r"); break;
      case '\t': out.add("\\t"); break;
      default:
        if (c < 0x20) out.addf("\\u%04x", unsigned(c));
        else out.append(s, 1);
    }
  }
  out.add("\"");
}

}  // namespace mtlc::core
