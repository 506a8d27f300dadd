// The rollout tools of @fovea/trainers: the crop/grounding tool (MGPO), the search tool
// (MMSearch-R1 style, local BM25 backend) and the Tool interface both implement.
export { type Tool, type ToolOutput, fillTemplate, checkTemplate } from './types.js';
export {
  parseBox, isParseError, DEFAULT_MAX_BOX_TEXT_CHARS,
  type Box, type ParsedBox, type BoxParseError, type BoxParseResult, type ParseBoxOptions,
} from './boxParser.js';
export {
  cropTool, checkBox, modelToOriginal, originalToModel, cropRgb, endsWithJsonFence,
  MGPO_CROP_MIN_PIXELS, DEFAULT_CROP_VALID_TEXT, DEFAULT_CROP_INVALID_TEXT, CROP_FAILURE_PHRASES,
  type CropTool, type CropToolOptions, type CropInput, type CropReport, type CropResult, type CropFailure,
  type BoxRules, type BoxCheck, type Rounding,
} from './crop.js';
export { Bm25Index, bm25Tokenize, type Bm25Doc, type Bm25Hit, type Bm25Options } from './bm25.js';
export {
  searchTool, parseSearch, formatSearchResults, LocalBm25Backend, DEFAULT_SEARCH_FORMAT, DEFAULT_SEARCH_ERROR_TEXT,
  type SearchBackend, type SearchResult, type SearchFormat, type SearchToolOptions, type SearchReport,
  type ParseSearchOptions, type JsonlCorpusOptions,
} from './search.js';
