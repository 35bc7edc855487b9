"""Common English words (written for stair-es; no download) that seed the WordPiece vocabulary, so
ordinary query words are whole tokens and not only the words of the synthetic grammar."""

ENGLISH_WORDS: tuple[str, ...] = tuple(
    """
    the of and to in is was for on that with as by at from it his an be are this which or had not but
    were have her their one all they been has who its more she he there when we would other also first
    can new two some about into after time than these only him out people up over where most made many
    three may years such year between then so used world city during use known part later under state
    while them each both american through since however before well war national born united because own
    being way name life states area still including school work until several century family number
    early population around another film government same like found high four group history season
    system small following long north south east west team based those now major second last house game
    began large back without five series public against league end main age day how often power within
    music local though home very make did could said will any what if no do does see get go take come
    know think look want give find tell ask seem feel try leave call keep let begin help show hear play
    run move live believe bring happen write provide sit stand lose pay meet include continue set learn
    change lead understand watch follow stop create speak read allow add spend grow open walk win offer
    remember love consider appear buy wait serve die send expect build stay fall cut reach kill remain
    suggest raise pass sell require report decide pull break thank receive join cause represent apply
    produce carry describe draw drive eat drink sleep sing swim fly jump climb ride throw catch kick
    hold push wear wash cook clean paint smile laugh cry shout talk lie rest dance fight hit hug kiss
    point touch turn wave stare shine hang float park cross enter exit fill pour sail surf skate ski man
    woman child children boy girl baby person men women kid kids player players friend friends mother
    father brother sister son daughter wife husband parent parents teacher student doctor nurse police
    officer soldier worker farmer chef driver pilot king queen prince princess guy lady gentleman crowd
    couple dog dogs cat cats horse horses cow cows sheep bird birds duck ducks chicken fish bear bears
    elephant elephants giraffe giraffes zebra zebras lion tiger monkey mouse rabbit pig goat deer fox
    wolf snake frog butterfly bee animal animals pet puppy kitten car cars truck trucks bus buses train
    trains bike bikes bicycle motorcycle motorbike boat boats ship plane airplane airplanes jet
    helicopter taxi van vehicle vehicles wheel wheels engine road roads street streets highway bridge
    tunnel traffic light lights sign signs station airport runway track tracks parking houses building
    buildings room rooms kitchen bathroom bedroom living office church tower wall walls door doors
    window windows floor roof ceiling stairs table tables chair chairs couch sofa bed beds desk shelf
    cabinet counter sink toilet shower mirror lamp clock clocks tv television computer laptop keyboard
    screen phone camera picture pictures photo photograph image book books paper box bag bags bottle
    bottles cup cups glass glasses plate plates bowl bowls fork knife spoon pot pan oven microwave
    refrigerator fridge stove umbrella kite kites ball balls bat racket frisbee skateboard surfboard
    skis snowboard hat hats shirt shirts jacket coat dress shoes shoe tie suit uniform helmet backpack
    suitcase luggage food pizza sandwich sandwiches cake cakes donut donuts banana bananas apple apples
    orange oranges fruit fruits vegetable vegetables broccoli carrot carrots hot bread cheese meat rice
    egg eggs salad soup coffee tea water milk wine beer juice dinner lunch breakfast meal tree trees
    grass flower flowers plant plants leaf leaves forest field fields garden beach sand sea ocean lake
    river waves mountain mountains hill hills sky cloud clouds sun moon star stars snow rain rock rocks
    stone island desert ground dirt mud ice fire smoke air wind weather red green blue yellow purple
    pink brown black white gray grey cyan magenta violet gold golden silver dark bright pale colorful
    colourful colored coloured color colour colors colours circle circles square squares triangle
    triangles rectangle rectangles diamond diamonds crosses ring rings oval ovals line lines dot dots
    shape shapes heart hearts arrow arrows cube sphere big little tiny huge giant tall short wide narrow
    thick thin round flat low full empty heavy left right top bottom center centre middle side front
    corner edge inside outside above below behind near next beside along across down six seven eight
    nine ten eleven twelve twenty hundred thousand third single double pair few every background
    foreground scene view space place spot surface pattern texture good bad great best better old young
    different important able late hard economic strong possible whole free military true federal
    international special easy clear recent certain personal difficult available likely medical current
    wrong private past foreign fine common poor natural significant similar dead central happy serious
    ready simple physical general environmental financial democratic various entire close legal
    religious cold final nice popular traditional cultural wooden metal plastic busy quiet beautiful
    pretty ugly cute funny strange dirty wet dry warm cool fresh sweet sour soft smooth rough sharp
    really just even again never always sometimes together alone here today tonight yesterday tomorrow
    soon away almost quite rather a onto upon among beyond off am shall should might must our you your i
    me my whom whose why yes days week weeks month months hour hours minute minutes morning evening
    night afternoon spring summer autumn winter weekend job business company money market price cost
    plan idea problem question answer reason result example fact case thing things stuff kind sort type
    piece amount level rate order form country countries cities town village nation region land college
    university class lesson test games sport sports match race party event movie movies song art story
    news letter word words language body head face eye eyes ear ears nose mouth lip lips tooth teeth
    hair neck shoulder arm arms hand hands finger fingers leg legs knee foot feet skin blood bone
    standing sitting walking running riding holding playing eating looking flying driving parked lying
    laying wearing carrying jumping swimming smiling talking watching waiting sleeping cutting cooking
    throwing catching hitting swinging surfing skiing skating skateboarding posing grazing covered
    filled topped stacked displayed shown painted surrounded attached placed located ability accept
    access accident account act action active activity actor actress actual actually address
    administration admit adult affect afraid agency agent ago agree agreement ahead aim alive already
    although amazing analysis ancient anger angle angry announce annual anybody anyone anything anyway
    anywhere apartment apparent appeal approach approve argue argument army arrange arrival arrive
    article artist aside asleep assume attack attempt attend attention attitude attract audience author
    authority average avoid award aware awful bake balance band bank bar base basic basket bath battle
    bean beat beauty become beef beginning behavior bell belong belt bench bend benefit bet bill billion
    bit bite blade blank blanket blind block blow board bold bomb bond bonus boot border bored boring
    borrow boss bounce bound brain branch brand brave breath brick brief broad broken brush bucket
    budget bug bunch burn bush butter button cabin cable calm camp campaign candle candy cap capital
    captain card care career careful carpet cart cash castle casual cattle cell chain chalk challenge
    champion chance channel chapter character charge chart chase cheap check cheek chest chief chip
    choice choose circus citizen civil claim closet cloth clothes clothing club coach coast code collect
    collection column comfortable command comment community compare competition complete concert
    condition connect contain content contest control conversation copy corn correct cotton count county
    course court cousin cover crash crazy cream creature credit crew crime crop crown cruise curtain
    curve custom customer cycle daily damage danger dangerous data date deal dear debate decade decision
    deep defense degree delay deliver demand dentist depend deposit depth design detail develop device
    diet difference digital direction director disease dish display distance divide doll dollar domain
    dozen dragon drama drawer dream drop drum dust duty eager eagle earth easily eastern education
    effect effort elbow election electric element elevator else email emergency emotion empire employee
    energy engineer enjoy enough entrance envelope equal equipment error escape essay estate evidence
    exact exam excellent exchange excited exercise expert explain express extra fabric factory fail fair
    faith false fame famous fan fancy farm fashion fast fat fault favor favorite fear feather feature
    fee fence festival fever figure file finance finish fit fix flag flame flash fleet flight flood
    flour fluid focus fog fold folk force forget forgive formal fortune forward frame freedom freeze
    frequent friday friendly fuel fun fund furniture future gallery gap gas gate gather gear gene gentle
    ghost gift glad glove glue goal god golf goods grab grade grain grand grape graph grateful grave
    greet grocery guard guess guest guide guitar gun habit hall hammer handle harbor harm hate health
    heat heaven height hello hero hide hire hobby hole holiday hollow honest honey hope horn hospital
    host hotel human humor hunger hungry hunt hurry hurt identify ignore ill illegal imagine impact
    improve incident income increase index indoor industry infant inform injury ink insect insist
    install instance instead instrument insurance interest internet interview invite iron issue item
    jail jam jar jaw jeans jewel joke journey joy judge jungle junior jury justice keen kettle key knot
    knowledge label labor ladder lane laser launch laundry lawn lawyer layer lazy leader lean least
    leather lecture lemon lend length library lid lift limit liquid list listen load loan lobby lock
    lonely loose lord lorry loud lovely luck machine magazine magic mail maintain male mall manage
    manager map marble march mark marriage mask mass master mat material matter meadow meaning measure
    medal medium melt member memory mental menu mercy mess message method mild mind mine minor miss
    mission mistake mix model modern moment monday monster mood moral motor muscle museum mystery nail
    native nature neat needle neighbor nerve nest net network noise normal note notice novel nut object
    odd oil olive onion opera opinion option ordinary organ original outdoor owner pack package page
    pain palace palm panel panic pants parade partner passenger path patient pause peace peak pear pen
    pencil penny pepper perfect period permit piano pick pie pile pillow pin pipe pitch planet platform
    plenty pocket poem poet pond pool pop port portrait post poster potato pound powder practice praise
    prefer prepare present president press pretend prevent pride print prison prize process product
    profit program project promise proof property protect proud pump punch pupil purse puzzle quarter
    quick quilt quote rail railway rainbow range rapid rare raw razor reader reality rear recipe record
    recover reduce relax release remote rent repair repeat reply rescue research resort respect
    restaurant return review reward rhythm rich riddle rise risk rival roast robot rocket roll root rope
    rose route row royal rubber rug rule ruler rural rush sad saddle safe safety sailor sale salt sample
    satellite sauce sausage save scale scarf schedule science scissors score screw script sculpture seat
    secret section security seed senior sense sentence service session settle shade shadow shake shallow
    share shark sheet shell shelter shield shift shore shovel silence silk singer size skill skirt slice
    slide slope smell snack soap sock soda soil solid solution soul sound source spare speech speed
    spice spider spirit splash sponge spray stable stack stadium staff stage stamp standard statue steam
    steel stick stomach storm straight straw stream strength string stripe striped studio style sugar
    supper supply surprise sweater switch symbol tablet tail tale talent tank tape target taste tax
    teach tear temple tennis tent term terrible text theater theme theory thief thread threat throat
    thumb ticket tide tight timber tip tire title toast toe tomato tone tongue tool topic total tour
    towel toy trade trail transport trap trash travel tray treat trend trial trick trip trophy tube tune
    twin uncle union unique unit universe upper upset urban user usual vacation valley value vase vast
    vest victory video violin visit visitor voice volume vote wage wagon waist wallet warn waste wealth
    weapon weight welcome western whale wheat whip whisper wild wing wire wise witness wonder wood wool
    worth wrap wrist yard yoga youth zone zoo
    """.split()
)
