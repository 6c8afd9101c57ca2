// The syntax of .mtl programs: the only description of it (docs/ and LANGUAGE.md explain meaning).
//
// Design notes
// - Whitespace, newlines included, is insignificant: statements end where the next keyword or name
//   begins, so `loss bce weight 0.5` on one line means the same as on two.
// - Only the words that start a declaration or a task statement are reserved, plus `mixture`,
//   `gate` and `in` (see KEYWORDS below). Layer, expert-block (ple, cgc, cross_stitch, mtan), source
//   function (column, concat), loss, metric, optimizer, weighting, data-source and train-setting
//   names are ordinary identifiers:
//   semantic analysis checks them, which gives better messages ("unknown layer 'desne'; did you
//   mean 'dense'?") than a parser could.
// - The grammar is deliberately permissive about order and multiplicity (several `model` lines, a
//   task without a loss, two pipelines in one task, a `train` block anywhere): those are reported
//   by semantic analysis with a location and a note pointing at the other occurrence.
// - Inside `task NAME { ... }` the pipeline and the `loss` / `weight` / `metric` statements may come
//   in any order; by convention the pipeline comes first.
// - The multi-task forms (expert blocks, gate/column/concat sources, embedding, weighting, freeze)
//   are explained, with a complete program for each, in docs/mtl-architectures.md.

grammar MTL;

// ---- Program ----------------------------------------------------------------------------------

program
    : item* EOF
    ;

item
    : modelDecl
    | inputDecl
    | sharedDecl
    | taskDecl
    | trainBlock
    | dataBlock
    ;

// model NAME
modelDecl
    : MODEL name=IDENT
    ;

// input NAME : f32[1, 28, 28]      (dims are checked by sema: integers >= 1)
inputDecl
    : INPUT name=IDENT ':' dtype=IDENT '[' number (',' number)* ']'
    ;

// shared NAME = SOURCE -> layer -> layer ...
sharedDecl
    : SHARED name=IDENT '=' pipeline
    ;

// task NAME { PIPELINE  loss L  weight W  metric M, M ... }
taskDecl
    : TASK name=IDENT '{' taskItem* '}'
    ;

taskItem
    : pipeline                                        # taskPipeline
    | LOSS call                                       # taskLoss
    | WEIGHT number                                   # taskWeight
    | METRIC metricName (',' metricName)*             # taskMetric
    ;

metricName
    : IDENT
    ;

// ---- Pipelines --------------------------------------------------------------------------------

// SOURCE -> stage -> stage ...   A pipeline ends at the first token that is not '->'.
pipeline
    : source ('->' stage)*
    ;

// Where a pipeline starts (docs/mtl-architectures.md explains the multi-task forms):
//   image                 an input or a shared block
//   gate(experts)         a task's own gate over a mixture / ple / cgc block
//   column(cs)            a task's own column of a cross_stitch or mtan block
//   concat(a, b, ...)     inputs and shared blocks joined along the feature axis
// The function names of `callSource` are not reserved; sema checks them ("column", "concat").
source
    : GATE '(' IDENT ')'                            # gateSource
    | func=IDENT '(' IDENT (',' IDENT)* ')'         # callSource
    | IDENT                                         # nameSource
    ;

// A layer, or an expert block: a call followed by a body in braces. The body is one expert's
// layers, or (cross_stitch, mtan) several stages separated by ';':
//   x -> mixture(experts=8) { dense(16) -> relu }
//   x -> ple(levels=2, shared=2, specific=2) { dense(16) -> relu }
//   x -> cgc(shared=2, specific=2) { dense(16) -> relu }
//   x -> cross_stitch { dense(32) -> relu ; dense(16) -> relu }
//   x -> mtan { conv2d(8, kernel=3, padding=1) -> relu ; maxpool(2) -> conv2d(16, kernel=3, padding=1) }
// `mixture` is reserved (LANGUAGE.md's core form); the other block names are ordinary identifiers
// checked by sema, like layer names (a body after any call parses; sema rejects `dense(4) { .. }`).
stage
    : MIXTURE '(' argList? ')' '{' blockBody '}'            # mixtureStage
    | call ('{' blockBody '}')?                             # layerStage
    ;

// stage ; stage ; ...   (one stage for mixture / ple / cgc; sema checks the count)
blockBody
    : blockLayers (';' blockLayers)*
    ;

blockLayers
    : call ('->' call)*
    ;

// A layer, loss, optimizer, weighting or data source: `relu`, `dense(64)`, `conv2d(32, kernel=3)`,
// `adam(lr=0.001)`, `fashion_mnist("train")`. A bare name (no parentheses) has no arguments.
call
    : name=IDENT ('(' argList? ')')?
    ;

argList
    : arg (',' arg)*
    ;

// Positional `3`, or keyword `kernel=3`. (Positional after keyword is rejected when building the AST.)
// The keywords `shared` and `gate` are also argument names: ple(levels=2, shared=2, specific=2),
// mixture(experts=8, gate=dselect, select=2).
arg
    : (key=(IDENT | SHARED | GATE) '=')? value
    ;

value
    : number
    | STRING
    | IDENT                 // true, false, or any name; its meaning is up to sema
    | '{' number (',' number)* '}'   // a list: multistep(at={15, 30})
    ;

number
    : '-'? (INT | FLOAT)
    ;

// ---- train { ... } ----------------------------------------------------------------------------

// train { optimizer adam(lr=0.001) batch 64 epochs 2 weighting fixed seed 42 shuffle false }
// Each setting is a name followed by a value: a number, or a (possibly called) name. Settings that
// take a list (`freeze trunk, experts`, `lr_scale trunk=0.1, head=2`) separate the values with
// ','; sema checks the counts.
trainBlock
    : TRAIN '{' trainSetting* '}'
    ;

trainSetting
    : key=IDENT settingValue (',' settingValue)*
    ;

settingValue
    : number
    | dotted=IDENT DOT member=IDENT     // select TASK.METRIC
    | scaled=IDENT ASSIGN number        // lr_scale trunk=0.1
    | call
    ;

// ---- data { ... } -----------------------------------------------------------------------------

// data { train SRC  test SRC  NAME = EXPR ... }
dataBlock
    : DATA '{' dataItem* '}'
    ;

dataItem
    : role=(TRAIN | IDENT) call             # dataSource      // train fashion_mnist("train"); test ...
    | target=IDENT '=' bindExpr             # dataBinding     // category = label
    ;

// FIELD [transform]:  pixels / 255,  label in {5, 7, 9},  label == 3,  columns(3..10) * 2
bindExpr
    : fieldRef (binOp number | IN '{' number (',' number)* '}')?
    ;

binOp
    : '/' | '*' | '+' | '-' | '==' | '!=' | '>' | '>=' | '<' | '<='
    ;

// A field of the source: `pixels`, `label`, a csv column name, `data` (an npy file's array), or
// `columns("a", "b")`, `columns(3..10)` (0-based positions, both ends included).
fieldRef
    : name=(IDENT | DATA) ('(' columnSel (',' columnSel)* ')')?
    ;

columnSel
    : STRING                # columnName
    | INT ('..' INT)?       # columnRange
    ;

// ---- Lexer ------------------------------------------------------------------------------------

// KEYWORDS: reserved words (cannot be used as names).
MODEL   : 'model' ;
INPUT   : 'input' ;
SHARED  : 'shared' ;
TASK    : 'task' ;
LOSS    : 'loss' ;
WEIGHT  : 'weight' ;
METRIC  : 'metric' ;
TRAIN   : 'train' ;
DATA    : 'data' ;
MIXTURE : 'mixture' ;
GATE    : 'gate' ;
IN      : 'in' ;

ARROW     : '->' ;
DOTDOT    : '..' ;
DOT       : '.' ;
EQEQ      : '==' ;
NEQ       : '!=' ;
GE        : '>=' ;
LE        : '<=' ;
GT        : '>' ;
LT        : '<' ;
ASSIGN    : '=' ;
COLON     : ':' ;
COMMA     : ',' ;
SEMI      : ';' ;       // only between the stages of a cross_stitch or mtan body
LPAREN    : '(' ;
RPAREN    : ')' ;
LBRACE    : '{' ;
RBRACE    : '}' ;
LBRACKET  : '[' ;
RBRACKET  : ']' ;
PLUS      : '+' ;
MINUS     : '-' ;
STAR      : '*' ;
SLASH     : '/' ;

IDENT : [A-Za-z_] [A-Za-z0-9_]* ;

// 3   0.5   1e-3   2.5E+4   (a sign is a separate token; `3..10` lexes as INT DOTDOT INT)
INT   : DIGITS ;
FLOAT : DIGITS '.' DIGITS EXPONENT?
      | DIGITS EXPONENT
      ;
fragment DIGITS   : [0-9]+ ;
fragment EXPONENT : [eE] [+-]? DIGITS ;

// "text" with backslash escapes; no newlines inside.
STRING : '"' (~["\\\r\n] | '\\' ~[\r\n])* '"' ;
// A string missing its closing quote (longest match prefers STRING when the quote is there);
// reported by the parser wrapper as "unterminated string".
UNTERMINATED_STRING : '"' (~["\\\r\n] | '\\' ~[\r\n])* '\\'? ;

COMMENT : '#' ~[\r\n]* -> skip ;
WS      : [ \t\r\n\f]+ -> skip ;

// Anything else: one bad character, reported by the parser wrapper ("unexpected character").
BAD_CHAR : . ;
